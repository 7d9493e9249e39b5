// Explore: PromQL and LogQL editors with highlighting and completion (metric names, label
// names and values from the APIs), graph/table/logs views and a query history.

import { h, clear, parseTime, fmtDate } from './util.js';
import { t } from './i18n.js';
import * as api from './api.js';
import { renderTimeseries, renderTable, renderLogs } from './panels.js';
import { toFrames, toTable } from './dashboard.js';

const KEYWORDS = new Set(['sum', 'avg', 'min', 'max', 'count', 'stddev', 'stdvar', 'topk', 'bottomk', 'quantile', 'count_values', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'offset', 'bool', 'and', 'or', 'unless', 'rate', 'irate', 'increase', 'delta', 'idelta', 'histogram_quantile', 'abs', 'absent', 'ceil', 'floor', 'round', 'clamp_min', 'clamp_max', 'label_replace', 'label_join', 'time', 'vector', 'scalar', 'sort', 'sort_desc', 'avg_over_time', 'max_over_time', 'min_over_time', 'sum_over_time', 'count_over_time', 'last_over_time', 'bytes_over_time', 'bytes_rate', 'json', 'logfmt', 'regexp', 'pattern', 'line_format', 'label_format', 'unwrap', 'deriv', 'predict_linear', 'changes', 'resets']);

/** Splits a query into coloured tokens (strings, numbers, durations, keywords, operators). */
export function tokens(src) {
  const out = [];
  const re = /("(?:[^"\\]|\\.)*"?|`[^`]*`?)|(\[[0-9smhdwy:]+\])|(\b\d+(?:\.\d+)?\b)|([a-zA-Z_:][a-zA-Z0-9_:]*)|(\|=|!=|=~|!~|\|~|!~|[{}()|,=<>!+\-*/^%])|(\s+)|(.)/g;
  let m;
  while ((m = re.exec(src)) !== null) {
    const [s] = m;
    let cls = 'tk';
    if (m[1]) cls = 'tk-str';
    else if (m[2]) cls = 'tk-dur';
    else if (m[3]) cls = 'tk-num';
    else if (m[4]) cls = KEYWORDS.has(s) ? 'tk-kw' : 'tk-id';
    else if (m[5]) cls = 'tk-op';
    out.push([cls, s]);
  }
  return out;
}

let metricNames = null;

export async function showExplore(root, params) {
  clear(root);
  let mode = params.get('mode') === 'logql' ? 'logql' : 'promql';
  let range = params.get('range') || '1h';
  const input = h('textarea', { class: 'code editor-input', id: 'explore-query', rows: 3, spellcheck: 'false', placeholder: 'PromQL / LogQL' }, params.get('q') || '');
  const hl = h('pre', { class: 'code editor-hl', 'aria-hidden': 'true' });
  const sugg = h('ul', { class: 'suggestions hidden', id: 'explore-suggestions' });
  const result = h('div', { class: 'explore-result', id: 'explore-result' });
  const histEl = h('ul', { class: 'history' });
  const viewSel = h('select', { class: 'select', id: 'explore-view' }, ['graph', 'table', 'logs'].map((v) => h('option', { value: v }, t(v))));
  const modeSel = h('select', { class: 'select', id: 'explore-mode', onchange: (e) => { mode = e.target.value; viewSel.value = mode === 'logql' ? 'logs' : 'graph'; } },
    h('option', { value: 'promql', selected: mode === 'promql' }, 'PromQL (Prometheus)'), h('option', { value: 'logql', selected: mode === 'logql' }, 'LogQL (Loki)'));
  viewSel.value = mode === 'logql' ? 'logs' : 'graph';
  const rangeSel = h('select', { class: 'select', onchange: (e) => { range = e.target.value; } }, ['5m', '15m', '1h', '6h', '24h', '7d'].map((r) => h('option', { value: r, selected: r === range }, `Last ${r}`)));

  const paint = () => {
    clear(hl);
    for (const [cls, s] of tokens(input.value)) hl.append(h('span', { class: cls }, s));
    hl.append('\n');
  };
  input.addEventListener('input', () => { paint(); complete(); });
  input.addEventListener('scroll', () => { hl.scrollTop = input.scrollTop; });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.shiftKey || e.ctrlKey)) { e.preventDefault(); run(); }
    if (e.key === 'Escape') sugg.classList.add('hidden');
    if (e.key === 'Tab' && !sugg.classList.contains('hidden') && sugg.firstChild) { e.preventDefault(); sugg.firstChild.click(); }
  });

  async function complete() {
    const pos = input.selectionStart;
    const before = input.value.slice(0, pos);
    let items = [], word = '';
    try {
      const inBraces = before.lastIndexOf('{') > before.lastIndexOf('}');
      if (inBraces) {
        const valueCtx = /([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)$/.exec(before);
        if (valueCtx) {
          word = valueCtx[3];
          items = mode === 'logql' ? await api.lokiLabelValues(valueCtx[1]) : await api.promLabelValues(valueCtx[1]);
        } else {
          word = (/([a-zA-Z_][a-zA-Z0-9_]*)$/.exec(before) || ['', ''])[1];
          const metric = (/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{[^{}]*$/.exec(before) || [])[1];
          items = mode === 'logql' ? await api.lokiLabelNames() : await api.promLabelNames(metric);
        }
      } else if (mode === 'promql') {
        word = (/([a-zA-Z_:][a-zA-Z0-9_:]*)$/.exec(before) || ['', ''])[1];
        if (word.length >= 1) {
          metricNames = metricNames || await api.promLabelValues('__name__');
          items = metricNames;
        }
      }
    } catch (_) { items = []; }
    const lw = word.toLowerCase();
    const hits = items.filter((x) => x.toLowerCase().includes(lw) && x !== word).slice(0, 12);
    clear(sugg);
    if (!hits.length) { sugg.classList.add('hidden'); return; }
    for (const x of hits) {
      sugg.append(h('li', { onclick: () => {
        input.value = before.slice(0, before.length - word.length) + x + input.value.slice(pos);
        const np = pos - word.length + x.length;
        input.setSelectionRange(np, np);
        sugg.classList.add('hidden');
        paint();
        input.focus();
      } }, x));
    }
    sugg.classList.remove('hidden');
  }

  const history = () => JSON.parse(localStorage.getItem('lookout.history') || '[]');
  const drawHistory = () => {
    clear(histEl);
    for (const it of history()) {
      histEl.append(h('li', null, h('button', { class: 'link', onclick: () => { mode = it.mode; modeSel.value = it.mode; input.value = it.q; paint(); run(); } }, h('span', { class: 'muted' }, `${it.mode} · ${fmtDate(it.at, false)} `), it.q)));
    }
  };

  async function run() {
    const q = input.value.trim();
    sugg.classList.add('hidden');
    if (!q) return;
    const hist = history().filter((x) => !(x.q === q && x.mode === mode));
    hist.unshift({ q, mode, at: Date.now() });
    localStorage.setItem('lookout.history', JSON.stringify(hist.slice(0, 30)));
    drawHistory();
    const p = new URLSearchParams({ mode, q, range });
    window.history.replaceState(null, '', `/explore?${p}`);
    const to = Date.now();
    const from = parseTime(`now-${range}`);
    const width = Math.max(200, result.clientWidth || 800);
    const step = Math.max(1, Math.ceil((to - from) / width / 1000));
    clear(result).append(h('div', { class: 'loading' }, t('loading')));
    result.dataset.state = 'loading';
    const view = viewSel.value;
    try {
      const tg = { refId: 'A', legendFormat: '' };
      let data;
      if (mode === 'logql') {
        data = await api.lokiRange(q, from, to, step, 500);
      } else if (view === 'table') {
        data = await api.promInstant(q, to);
      } else {
        data = await api.promRange(q, from, to, step);
      }
      clear(result);
      const box = h('div', { class: 'panel-body explore-body' });
      result.append(box);
      if (data.resultType === 'streams') {
        const entries = [];
        for (const s of data.result || []) for (const [ns, line] of s.values || []) entries.push({ ts: Number(BigInt(ns) / 1000000n), line, labels: s.stream || {} });
        entries.sort((a, b) => b.ts - a.ts);
        if (!entries.length) throw new Error(t('noData'));
        box.append(h('div', { class: 'muted' }, `${entries.length} ${t('lines')}`));
        renderLogs(box, { options: { showTime: true } }, entries);
      } else if (view === 'table' || data.resultType === 'vector' || data.resultType === 'scalar') {
        const { rows, columns } = toTable([{ tg, expr: q, data }]);
        if (!rows.length) throw new Error(t('noData'));
        renderTable(box, {}, rows, columns);
      } else {
        const frames = toFrames([{ tg, expr: q, data }]);
        if (!frames.length) throw new Error(t('noData'));
        box.style.height = '360px';
        renderTimeseries(box, { options: { legend: { displayMode: 'list' } } }, frames, { from, to });
      }
      result.dataset.state = 'ok';
    } catch (e) {
      clear(result).append(h('div', { class: e.message === t('noData') ? 'nodata' : 'panel-error' }, e.message));
      result.dataset.state = e.message === t('noData') ? 'nodata' : 'error';
    }
  }

  root.append(h('div', { class: 'explore' },
    h('div', { class: 'explore-bar' }, modeSel, viewSel, rangeSel, h('button', { class: 'btn primary', id: 'explore-run', onclick: run }, t('runQuery'))),
    h('div', { class: 'editor' }, hl, input, sugg),
    result,
    h('h3', null, t('history')), histEl));
  paint();
  drawHistory();
  if (input.value) run();
}
