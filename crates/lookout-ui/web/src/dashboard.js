// The dashboard view: time picker, refresh, template variables, the 24-column gridPos layout
// with collapsible rows, parallel panel queries (step from pixel width), editing and saving.

import { h, clear, parseTime, parseDuration, formatDuration, fmtDate, legend, debounce } from './util.js';
import { t } from './i18n.js';
import * as api from './api.js';
import { SUPPORTED, renderTimeseries, renderStat, renderGauge, renderBarGauge, renderTable, renderLogs, renderText } from './panels.js';
import { openPanelEditor } from './editor.js';

const ROW_H = 30;
const GAP = 8;
const SCRAPE_MS = 15000;
const QUICK = ['5m', '15m', '30m', '1h', '3h', '6h', '12h', '24h', '2d', '7d'];
const REFRESH = ['', '5s', '10s', '30s', '1m', '5m', '15m'];

let current = null;

export function stopDashboard() {
  if (current) current.stop();
  current = null;
}

/** Opens a dashboard (`uid`) or a new empty one (uid null). */
export async function showDashboard(root, uid, params) {
  stopDashboard();
  let model, meta;
  if (uid) {
    const r = await api.get(`/api/dashboards/uid/${encodeURIComponent(uid)}`);
    model = r.dashboard;
    meta = r.meta;
  } else {
    model = { title: '', panels: [], schemaVersion: 39, time: { from: 'now-6h', to: 'now' }, templating: { list: [] } };
    meta = { canSave: true, canEdit: true, provisioned: false, folderTitle: '' };
  }
  current = new DashboardView(root, model, meta, params, !uid);
  await current.start();
}

class DashboardView {
  constructor(root, model, meta, params, isNew) {
    this.root = root;
    this.model = model;
    this.meta = meta;
    this.isNew = isNew;
    this.editing = isNew;
    this.timer = null;
    this.generation = 0;
    this.plots = [];
    const tm = model.time || { from: 'now-6h', to: 'now' };
    this.from = params.get('from') || tm.from || 'now-6h';
    this.to = params.get('to') || tm.to || 'now';
    this.refresh = params.has('refresh') ? params.get('refresh') : (model.refresh || '');
    this.vars = (model.templating && model.templating.list) || [];
    this.values = {};
    for (const v of this.vars) {
      const fromUrl = params.getAll(`var-${v.name}`);
      if (fromUrl.length) this.values[v.name] = fromUrl;
      else if (v.current && v.current.value !== undefined) this.values[v.name] = [].concat(v.current.value);
    }
    this.options = {};
    this.onResize = debounce(() => this.renderPanels(), 200);
  }

  stop() {
    clearInterval(this.timer);
    this.generation++;
    window.removeEventListener('resize', this.onResize);
    for (const p of this.plots) p.destroy();
    this.plots = [];
  }

  range() {
    const from = parseTime(this.from);
    const to = parseTime(this.to, true);
    return { from: isNaN(from) ? Date.now() - 6 * 36e5 : from, to: isNaN(to) ? Date.now() : to };
  }

  async start() {
    window.addEventListener('resize', this.onResize);
    this.t0 = performance.now();
    this.renderChrome();
    await this.loadVariables(0);
    this.renderVariables();
    this.setRefresh(this.refresh);
    await this.renderPanels();
  }

  syncUrl() {
    const p = new URLSearchParams();
    p.set('from', this.from);
    p.set('to', this.to);
    for (const v of this.vars) for (const x of this.values[v.name] || []) p.append(`var-${v.name}`, x);
    if (this.refresh) p.set('refresh', this.refresh);
    history.replaceState(null, '', `${location.pathname}?${p}`);
  }

  setRefresh(r) {
    this.refresh = r;
    clearInterval(this.timer);
    const ms = parseDuration(r);
    if (ms > 0) this.timer = setInterval(() => this.renderPanels(), Math.max(ms, 1000));
  }

  renderChrome() {
    clear(this.root);
    const m = this.model;
    this.varBar = h('div', { class: 'var-bar' });
    this.grid = h('div', { class: 'grid' });
    this.timing = h('span', { class: 'muted render-time', id: 'render-time' });
    const fromIn = h('input', { class: 'time-input', value: this.from, 'aria-label': t('from') });
    const toIn = h('input', { class: 'time-input', value: this.to, 'aria-label': t('to') });
    const timeBtn = h('button', { class: 'btn', id: 'time-picker' }, this.rangeLabel());
    const quick = h('div', { class: 'dropdown hidden', id: 'time-dropdown' },
      h('div', { class: 'quick' }, QUICK.map((q) => h('button', { class: 'link', 'data-range': q, onclick: () => { this.setTime(`now-${q}`, 'now'); quick.classList.add('hidden'); } }, `Last ${q}`))),
      h('div', { class: 'abs' }, h('label', null, t('from'), fromIn), h('label', null, t('to'), toIn),
        h('button', { class: 'btn primary', id: 'time-apply', onclick: () => { this.setTime(fromIn.value.trim(), toIn.value.trim()); quick.classList.add('hidden'); } }, t('apply'))));
    timeBtn.addEventListener('click', () => quick.classList.toggle('hidden'));
    this.timeBtn = timeBtn;
    const refreshSel = h('select', { class: 'select', id: 'refresh-picker', onchange: (e) => { this.setRefresh(e.target.value); this.syncUrl(); } },
      REFRESH.map((r) => h('option', { value: r, selected: r === this.refresh }, r || t('off'))));
    const actions = [];
    if (this.meta.canSave) {
      actions.push(h('button', { class: 'btn', id: 'edit-toggle', onclick: () => { this.editing = !this.editing; this.renderChrome(); this.renderVariables(); this.renderPanels(); } }, this.editing ? t('cancel') : t('edit')));
      if (this.editing) {
        actions.push(h('button', { class: 'btn', id: 'add-panel', onclick: () => this.addPanel() }, t('addPanel')));
        actions.push(h('button', { class: 'btn primary', id: 'save-dashboard', onclick: () => this.save() }, t('save')));
      }
    } else if (this.meta.provisioned) {
      actions.push(h('span', { class: 'badge' }, t('readOnly')));
    }
    actions.push(h('button', { class: 'btn', id: 'export-json', onclick: () => this.exportJson() }, t('exportJson')));
    const titleEl = this.editing
      ? h('input', { class: 'title-input', id: 'dash-title', value: m.title || '', placeholder: t('title'), oninput: (e) => { m.title = e.target.value; } })
      : h('h1', { class: 'dash-title' }, m.title || '');
    this.root.append(
      h('div', { class: 'dash-header' },
        h('div', { class: 'dash-title-wrap' }, this.meta.folderTitle ? h('span', { class: 'muted' }, `${this.meta.folderTitle} / `) : null, titleEl),
        h('div', { class: 'dash-actions' }, actions, h('div', { class: 'time-wrap' }, timeBtn, quick),
          h('button', { class: 'btn', id: 'refresh-now', title: t('refresh'), onclick: () => this.renderPanels() }, '⟳'), refreshSel)),
      this.varBar, this.grid, h('div', { class: 'dash-footer' }, this.timing, ' ', h('span', { class: 'muted' }, t('zoomHint'))));
  }

  rangeLabel() {
    if (this.to === 'now' && this.from.startsWith('now-')) return `Last ${this.from.slice(4)}`;
    const r = this.range();
    return `${fmtDate(r.from, false)} → ${fmtDate(r.to, false)}`;
  }

  setTime(from, to) {
    if (isNaN(parseTime(from)) || isNaN(parseTime(to))) return;
    this.from = from;
    this.to = to;
    this.timeBtn.textContent = this.rangeLabel();
    this.syncUrl();
    this.loadVariables(0).then(() => { this.renderVariables(); this.renderPanels(); });
  }

  // ---- template variables ----

  builtins(panelWidth, intervalMs) {
    const r = this.range();
    const rangeMs = r.to - r.from;
    const rate = Math.max(intervalMs + SCRAPE_MS, 4 * SCRAPE_MS);
    return {
      __interval: formatDuration(intervalMs), __interval_ms: String(intervalMs),
      __rate_interval: formatDuration(rate), __range: formatDuration(Math.round(rangeMs / 1000) * 1000),
      __range_s: String(Math.round(rangeMs / 1000)), __range_ms: String(rangeMs),
      __from: String(r.from), __to: String(r.to), __dashboard: this.model.title || '',
    };
  }

  /** Replaces $var, ${var}, ${var:fmt} and [[var]]; multi values become regex alternations. */
  interpolate(s, builtins, fmt = 'regex') {
    if (typeof s !== 'string') return s;
    const value = (name, f) => {
      if (builtins && name in builtins) return builtins[name];
      const v = this.vars.find((x) => x.name === name);
      if (!v) return null;
      let vals = this.values[name] || [];
      if (vals.includes('$__all')) {
        if (v.allValue) return v.allValue;
        vals = (this.options[name] || []).map((o) => o.value);
      }
      const mode = f || fmt;
      if (mode === 'raw' || v.type === 'interval' || v.type === 'textbox' || v.type === 'constant') return vals.join(',');
      if (vals.length <= 1 && mode === 'regex') return vals.length ? vals[0] : '';
      if (mode === 'pipe') return vals.join('|');
      if (mode === 'csv') return vals.join(',');
      const esc = vals.map((x) => x.replace(/[\\^$*+?.()|[\]{}]/g, '\\\\$&'));
      return esc.length > 1 ? `(${esc.join('|')})` : (esc[0] ?? '');
    };
    return s.replace(/\$\{([a-zA-Z0-9_]+)(?::([a-z]+))?\}|\[\[([a-zA-Z0-9_]+)\]\]|\$([a-zA-Z0-9_]+)/g, (all, a, f, b, c) => {
      const name = a || b || c;
      const v = value(name, f);
      return v === null ? all : v;
    });
  }

  async loadVariables(fromIndex) {
    const r = this.range();
    for (let i = fromIndex; i < this.vars.length; i++) {
      const v = this.vars[i];
      let opts = [];
      try {
        opts = await this.variableOptions(v, r);
      } catch (e) {
        opts = [];
        v._error = e.message;
      }
      if (v.includeAll && v.type !== 'interval') opts = [{ text: t('all'), value: '$__all' }, ...opts.filter((o) => o.value !== '$__all')];
      this.options[v.name] = opts;
      const cur = (this.values[v.name] || []).filter((x) => opts.some((o) => o.value === x));
      if (!cur.length && opts.length && v.type !== 'textbox' && v.type !== 'constant') this.values[v.name] = [opts[0].value];
      else if (cur.length) this.values[v.name] = cur;
    }
  }

  async variableOptions(v, r) {
    const q = typeof v.query === 'object' && v.query !== null ? (v.query.query ?? '') : (v.query ?? '');
    switch (v.type) {
      case 'custom':
        return String(q).split(/,(?![^{]*})/).map((s) => s.trim()).filter(Boolean).map((s) => {
          const kv = s.split(' : ');
          return kv.length === 2 ? { text: kv[0], value: kv[1] } : { text: s, value: s };
        });
      case 'interval':
        return String(q).split(',').map((s) => s.trim()).filter(Boolean).map((s) => ({ text: s, value: s }));
      case 'constant':
        this.values[v.name] = [String(q)];
        return [{ text: String(q), value: String(q) }];
      case 'textbox':
        if (!this.values[v.name]) this.values[v.name] = [String(q)];
        return [];
      case 'datasource':
        return [{ text: v.query || 'prometheus', value: v.query || 'prometheus' }];
      case 'query': {
        const expr = this.interpolate(String(q), this.builtins(1000, 60000));
        let values = [];
        let m;
        if ((m = /^label_values\(\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$/.exec(expr))) {
          values = await api.promLabelValues(m[1], null, r.from, r.to);
        } else if ((m = /^label_values\(\s*(.+)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$/s.exec(expr))) {
          values = await api.promLabelValues(m[2], m[1], r.from, r.to);
        } else if ((m = /^label_names\(\s*\)$/.exec(expr))) {
          values = await api.promLabelNames();
        } else if ((m = /^metrics\(\s*(.*)\s*\)$/.exec(expr))) {
          const re = new RegExp(m[1] || '.*');
          values = (await api.promLabelValues('__name__')).filter((x) => re.test(x));
        } else if ((m = /^query_result\(\s*(.+)\s*\)$/s.exec(expr))) {
          const res = await api.promInstant(m[1], r.to);
          values = (res.result || []).map((s) => `${s.metric.__name__ || ''}${JSON.stringify(s.metric)} ${s.value[1]} ${s.value[0] * 1000}`);
        } else if (expr.trim()) {
          throw new Error(`unsupported variable query: ${expr}`);
        }
        if (v.regex) {
          try {
            const re = new RegExp(v.regex.replace(/^\/(.*)\/[a-z]*$/, '$1'));
            values = values.map((x) => { const mm = re.exec(x); return mm ? (mm[1] ?? mm[0]) : null; }).filter((x) => x !== null);
          } catch (_) { /* invalid regex: keep values */ }
        }
        values = [...new Set(values)];
        if (v.sort === 1 || v.sort === 3) values.sort();
        if (v.sort === 2 || v.sort === 4) values.sort().reverse();
        return values.map((x) => ({ text: x, value: x }));
      }
      default:
        return [];
    }
  }

  renderVariables() {
    clear(this.varBar);
    this.vars.forEach((v, i) => {
      if (v.hide === 2) return;
      const label = v.hide === 1 ? null : h('label', { class: 'var-label' }, v.label || v.name);
      let ctl;
      if (v.type === 'textbox') {
        ctl = h('input', { class: 'var-input', value: (this.values[v.name] || [''])[0], onchange: (e) => this.setVar(i, [e.target.value]) });
      } else if (v.type === 'constant') {
        return;
      } else {
        ctl = h('select', { class: 'select var-select', 'data-var': v.name, multiple: !!v.multi, onchange: (e) => this.setVar(i, [...e.target.selectedOptions].map((o) => o.value)) },
          (this.options[v.name] || []).map((o) => h('option', { value: o.value, selected: (this.values[v.name] || []).includes(o.value) }, o.text)));
        if (v.multi) ctl.size = Math.min(4, (this.options[v.name] || []).length || 1);
      }
      this.varBar.append(h('div', { class: 'var' }, label, ctl, v._error ? h('span', { class: 'err-badge', title: v._error }, '!') : null));
    });
  }

  async setVar(i, vals) {
    const v = this.vars[i];
    if (vals.includes('$__all') && vals.length > 1) vals = vals[vals.length - 1] === '$__all' ? ['$__all'] : vals.filter((x) => x !== '$__all');
    this.values[v.name] = vals;
    await this.loadVariables(i + 1);
    this.renderVariables();
    this.syncUrl();
    this.renderPanels();
  }

  // ---- layout and panels ----

  async renderPanels() {
    const gen = ++this.generation;
    for (const p of this.plots) p.destroy();
    this.plots = [];
    clear(this.grid);
    const colW = (this.grid.clientWidth || window.innerWidth - 40) / 24;
    const panels = this.model.panels || [];
    let maxY = 0;
    const jobs = [];
    for (const p of panels) {
      const g = p.gridPos || { x: 0, y: maxY, w: 12, h: 8 };
      const el = this.panelBox(p, g, colW);
      this.grid.append(el);
      maxY = Math.max(maxY, (g.y || 0) + (g.h || 8));
      if (p.type === 'row') continue;
      jobs.push(this.runPanel(p, el, gen, Math.round(colW * (g.w || 12))));
    }
    this.grid.style.height = `${maxY * (ROW_H + GAP)}px`;
    const t0 = this.t0 ?? performance.now();
    await Promise.all(jobs);
    if (gen !== this.generation) return;
    const ms = Math.round(performance.now() - t0);
    this.t0 = performance.now();
    if (!window.__lookoutFirstRender) window.__lookoutFirstRender = ms;
    window.__lookoutRender = { ms, panels: jobs.length, navigationMs: Math.round(performance.now()) };
    performance.mark('lookout-dashboard-rendered');
    this.timing.textContent = `${jobs.length} panels ${t('renderTime')} ${ms} ms`;
    document.body.dataset.dashboardReady = String(gen);
  }

  panelBox(p, g, colW) {
    const style = {
      left: `${(g.x || 0) * colW}px`, top: `${(g.y || 0) * (ROW_H + GAP)}px`,
      width: `${(g.w || 12) * colW - GAP}px`, height: `${(g.h || 8) * (ROW_H + GAP) - GAP}px`,
    };
    if (p.type === 'row') {
      const collapsed = !!p.collapsed;
      return h('div', { class: 'row-header', style: { ...style, height: `${ROW_H}px` } },
        h('button', { class: 'link row-toggle', onclick: () => this.toggleRow(p) }, `${collapsed ? '▸' : '▾'} ${this.interpolate(p.title || '', null)}`,
          collapsed && p.panels ? h('span', { class: 'muted' }, ` (${p.panels.length})`) : null));
    }
    const title = this.interpolate(p.title || '', null);
    const body = h('div', { class: 'panel-body' });
    const status = h('span', { class: 'panel-status' });
    const header = h('div', { class: 'panel-header' }, h('span', { class: 'panel-title', title: p.description || '' }, title), status);
    const el = h('div', { class: 'panel', style, 'data-panel-id': p.id ?? '', 'data-type': p.type, 'data-state': 'loading' }, header, body);
    if (this.editing) {
      header.append(
        h('button', { class: 'link panel-edit', title: t('edit'), onclick: () => this.editPanel(p) }, '✎'),
        h('button', { class: 'link panel-remove', title: t('remove'), onclick: () => { this.model.panels = this.model.panels.filter((x) => x !== p); this.renderPanels(); } }, '✕'));
      this.makeDraggable(el, header, p, colW);
    }
    el._body = body;
    el._status = status;
    return el;
  }

  toggleRow(row) {
    const panels = this.model.panels;
    const idx = panels.indexOf(row);
    if (row.collapsed) {
      const inner = row.panels || [];
      row.panels = [];
      row.collapsed = false;
      const shift = inner.reduce((a, p) => Math.max(a, (p.gridPos?.h || 8)), 0);
      const rowY = row.gridPos?.y || 0;
      for (const p of panels.slice(idx + 1)) if (p.gridPos) p.gridPos.y += shift;
      inner.forEach((p) => { if (p.gridPos) p.gridPos.y = Math.max(p.gridPos.y, rowY + 1); });
      panels.splice(idx + 1, 0, ...inner);
    } else {
      let end = idx + 1;
      while (end < panels.length && panels[end].type !== 'row') end++;
      const inner = panels.splice(idx + 1, end - idx - 1);
      const height = inner.reduce((a, p) => Math.max(a, (p.gridPos?.y || 0) + (p.gridPos?.h || 8)), row.gridPos?.y || 0) - ((row.gridPos?.y || 0) + 1);
      row.panels = inner;
      row.collapsed = true;
      for (const p of panels.slice(idx + 1)) if (p.gridPos) p.gridPos.y -= Math.max(0, height);
    }
    this.renderPanels();
  }

  makeDraggable(el, handle, p, colW) {
    const unit = ROW_H + GAP;
    const start = (e, mode) => {
      e.preventDefault();
      const sx = e.clientX, sy = e.clientY;
      const g0 = { ...p.gridPos };
      const move = (ev) => {
        const dx = Math.round((ev.clientX - sx) / colW), dy = Math.round((ev.clientY - sy) / unit);
        if (mode === 'move') {
          p.gridPos.x = Math.max(0, Math.min(24 - g0.w, g0.x + dx));
          p.gridPos.y = Math.max(0, g0.y + dy);
        } else {
          p.gridPos.w = Math.max(2, Math.min(24 - g0.x, g0.w + dx));
          p.gridPos.h = Math.max(2, g0.h + dy);
        }
        el.style.left = `${p.gridPos.x * colW}px`;
        el.style.top = `${p.gridPos.y * unit}px`;
        el.style.width = `${p.gridPos.w * colW - GAP}px`;
        el.style.height = `${p.gridPos.h * unit - GAP}px`;
      };
      const up = () => { window.removeEventListener('mousemove', move); window.removeEventListener('mouseup', up); this.renderPanels(); };
      window.addEventListener('mousemove', move);
      window.addEventListener('mouseup', up);
    };
    handle.classList.add('draggable');
    handle.addEventListener('mousedown', (e) => { if (e.target === handle || e.target.classList.contains('panel-title')) start(e, 'move'); });
    const grip = h('div', { class: 'resize-grip' });
    grip.addEventListener('mousedown', (e) => start(e, 'resize'));
    el.append(grip);
  }

  isLoki(p, target) {
    const ds = (target && target.datasource) || p.datasource;
    const kind = typeof ds === 'string' ? ds.toLowerCase() : ((ds && (ds.type || ds.uid)) || '').toLowerCase();
    return kind.includes('loki') || p.type === 'logs';
  }

  async runPanel(p, el, gen, widthPx) {
    const body = el._body;
    const setState = (s, msg) => {
      el.dataset.state = s;
      clear(el._status);
      if (s === 'error') el._status.append(h('span', { class: 'err-badge', title: msg }, '!'));
    };
    try {
      if (p.type === 'text') { renderText(body, p); setState('ok'); return; }
      if (!SUPPORTED.has(p.type)) {
        clear(body).append(h('div', { class: 'placeholder' }, `${t('unsupported')}: ${p.type}`));
        setState('unsupported');
        return;
      }
      body.append(h('div', { class: 'loading' }, t('loading')));
      const r = this.range();
      const maxPoints = Math.max(20, Math.min(p.maxDataPoints || widthPx, widthPx));
      const minInterval = parseDuration(this.interpolate(p.interval || '', null)) || SCRAPE_MS;
      // A range query returns floor(range / step) + 1 points: never more than maxPoints.
      const stepMs = Math.max(minInterval, Math.ceil((r.to - r.from) / Math.max(1, maxPoints - 1) / 1000) * 1000);
      el.dataset.widthPx = String(widthPx);
      el.dataset.stepMs = String(stepMs);
      // Evaluate backwards from `to`, so the last point is the current value (stat panels)
      // even for series younger than one step.
      const startMs = r.to - Math.floor((r.to - r.from) / stepMs) * stepMs;
      const b = this.builtins(widthPx, stepMs);
      const targets = (p.targets || []).filter((x) => !x.hide && (x.expr || x.query));
      const tableLike = p.type === 'table';
      const results = await Promise.all(targets.map(async (tg) => {
        const expr = this.interpolate(tg.expr || tg.query, b);
        const loki = this.isLoki(p, tg);
        const instant = tableLike || tg.instant === true || tg.queryType === 'instant';
        if (loki) {
          if (p.type === 'logs') {
            const d = await api.lokiRange(expr, r.from, r.to, undefined, tg.maxLines || p.options?.maxLines || 500);
            return { tg, expr, kind: 'streams', data: d };
          }
          const d = instant ? await api.lokiInstant(expr, r.to) : await api.lokiRange(expr, startMs, r.to, stepMs / 1000);
          return { tg, expr, kind: 'metric', data: d };
        }
        const d = instant ? await api.promInstant(expr, r.to) : await api.promRange(expr, startMs, r.to, stepMs / 1000);
        return { tg, expr, kind: 'metric', data: d };
      }));
      if (gen !== this.generation) return;
      clear(body);
      if (p.type === 'logs') {
        const entries = [];
        for (const res of results) {
          for (const s of (res.data && res.data.result) || []) {
            for (const [ns, line] of s.values || []) entries.push({ ts: Number(BigInt(ns) / 1000000n), line, labels: s.stream || {} });
          }
        }
        entries.sort((a, b2) => (p.options?.sortOrder === 'Ascending' ? a.ts - b2.ts : b2.ts - a.ts));
        if (!entries.length) { body.append(h('div', { class: 'nodata' }, t('noData'))); setState('nodata'); return; }
        renderLogs(body, p, entries);
        setState('ok');
        return;
      }
      if (tableLike) {
        const { rows, columns } = toTable(results);
        if (!rows.length) { body.append(h('div', { class: 'nodata' }, t('noData'))); setState('nodata'); return; }
        renderTable(body, p, rows, columns);
        setState('ok');
        return;
      }
      const frames = toFrames(results);
      el.dataset.points = String(frames.reduce((a, f) => Math.max(a, f.values.length), 0));
      el.dataset.finite = String(frames.reduce((a, f) => a + f.values.filter((v) => Number.isFinite(v)).length, 0));
      if (!frames.length || frames.every((f) => !f.values.length)) {
        body.append(h('div', { class: 'nodata' }, t('noData')));
        setState('nodata');
        return;
      }
      if (p.type === 'timeseries' || p.type === 'graph') this.plots.push(renderTimeseries(body, p, frames, { ...r, onZoom: (a, z) => this.setTime(String(a), String(z)) }));
      else if (p.type === 'stat' || p.type === 'singlestat') renderStat(body, p, frames);
      else if (p.type === 'gauge') renderGauge(body, p, frames);
      else if (p.type === 'bargauge') renderBarGauge(body, p, frames);
      setState('ok');
    } catch (e) {
      if (gen !== this.generation) return;
      clear(body).append(h('div', { class: 'panel-error' }, `${t('loadingFailed')}: ${e.message}`));
      setState('error', e.message);
    }
  }

  addPanel() {
    const panels = this.model.panels || (this.model.panels = []);
    const y = panels.reduce((a, p) => Math.max(a, (p.gridPos?.y || 0) + (p.gridPos?.h || 8)), 0);
    const id = panels.reduce((a, p) => Math.max(a, p.id || 0), 0) + 1;
    const p = { id, type: 'timeseries', title: 'New panel', gridPos: { x: 0, y, w: 12, h: 8 }, targets: [{ refId: 'A', expr: '' }], fieldConfig: { defaults: {}, overrides: [] }, options: {} };
    panels.push(p);
    this.editPanel(p);
  }

  editPanel(p) {
    openPanelEditor(p, () => this.renderPanels());
  }

  async save() {
    const m = this.model;
    if (!m.title || !m.title.trim()) {
      const ti = document.getElementById('dash-title');
      if (ti) ti.focus();
      this.flash(`${t('title')}?`, true);
      return;
    }
    m.time = { from: this.from, to: this.to };
    for (const v of this.vars) {
      const vals = this.values[v.name] || [];
      v.current = { text: vals.length > 1 ? vals : (vals[0] ?? ''), value: v.multi ? vals : (vals[0] ?? '') };
    }
    try {
      const r = await api.post('/api/dashboards/db', { dashboard: m, folderUid: this.meta.folderUid || '', overwrite: false });
      m.uid = r.uid;
      m.version = r.version;
      this.flash(t('saved'));
      if (this.isNew) history.replaceState(null, '', r.url);
      this.isNew = false;
    } catch (e) {
      this.flash(e.message, true);
    }
  }

  flash(msg, err) {
    const f = h('div', { class: `toast${err ? ' error' : ''}` }, msg);
    document.body.append(f);
    setTimeout(() => f.remove(), 3000);
  }

  exportJson() {
    const copy = JSON.parse(JSON.stringify(this.model));
    delete copy.id;
    const blob = new Blob([JSON.stringify(copy, null, 2)], { type: 'application/json' });
    const a = h('a', { download: `${copy.uid || 'dashboard'}.json` });
    a.href = URL.createObjectURL(blob);
    document.body.append(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }
}

/** Matrix/vector results to named frames (legendFormat applied). */
export function toFrames(results) {
  const frames = [];
  for (const res of results) {
    const d = res.data || {};
    const list = d.resultType === 'scalar' ? [{ metric: {}, value: d.result }] : (d.result || []);
    for (const s of list) {
      const labels = s.metric || s.stream || {};
      const name = legend(res.tg.legendFormat, labels, res.expr);
      if (s.values) {
        frames.push({ name, labels, times: s.values.map((v) => Math.round(v[0] * 1000)), values: s.values.map((v) => parseFloat(v[1])) });
      } else if (s.value) {
        frames.push({ name, labels, times: [Math.round(s.value[0] * 1000)], values: [parseFloat(s.value[1])] });
      }
    }
  }
  return frames;
}

/** Instant results to table rows: one column per label, one "Value" (or "Value #A") per query. */
export function toTable(results) {
  const multi = results.length > 1;
  const byKey = new Map();
  const labelCols = new Set();
  const valueCols = [];
  for (const res of results) {
    const col = multi ? `Value #${res.tg.refId || 'A'}` : 'Value';
    valueCols.push(col);
    const d = res.data || {};
    const list = d.resultType === 'scalar' ? [{ metric: {}, value: d.result }] : (d.result || []);
    for (const s of list) {
      const { __name__: _n, ...labels } = s.metric || {};
      Object.keys(labels).forEach((k) => labelCols.add(k));
      const key = JSON.stringify(Object.entries(labels).sort());
      const row = byKey.get(key) || { ...labels };
      const v = s.value ? s.value[1] : s.values && s.values.length ? s.values[s.values.length - 1][1] : null;
      row[col] = v === null ? null : parseFloat(v);
      if (!row.Time && s.value) row.Time = s.value[0] * 1000;
      byKey.set(key, row);
    }
  }
  const columns = [...[...labelCols].sort(), ...valueCols];
  return { rows: [...byKey.values()], columns };
}
