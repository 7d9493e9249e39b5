// Panel renderers for the Grafana JSON model: timeseries (uPlot), stat, gauge, bargauge,
// table, logs, text. Each takes a body element, the panel JSON and the query results.

import uPlot from 'uplot';
import { h, clear, formatValue, reduce, thresholdColor, color, PALETTE, fmtDate } from './util.js';
import { t } from './i18n.js';
import { markdown } from './markdown.js';

export const SUPPORTED = new Set(['timeseries', 'graph', 'stat', 'singlestat', 'gauge', 'bargauge', 'table', 'logs', 'text', 'row']);

function defaults(panel) {
  return (panel.fieldConfig && panel.fieldConfig.defaults) || {};
}

function unitOf(panel) {
  const d = defaults(panel);
  if (d.unit) return d.unit;
  const y = panel.yaxes && panel.yaxes[0];
  return y && y.format;
}

/** Per-series overrides (by name or regex) for colours and units. */
function override(panel, name, prop) {
  const ovs = (panel.fieldConfig && panel.fieldConfig.overrides) || [];
  let out;
  for (const o of ovs) {
    const m = o.matcher || {};
    let hit = false;
    if (m.id === 'byName') hit = m.options === name;
    else if (m.id === 'byRegexp') { try { hit = new RegExp(m.options).test(name); } catch (_) { hit = false; } }
    if (!hit) continue;
    for (const p of o.properties || []) {
      if (p.id === prop) out = p.value;
    }
  }
  return out;
}

// ---- timeseries ----

export function renderTimeseries(body, panel, frames, ctx) {
  clear(body);
  const d = defaults(panel);
  const custom = d.custom || {};
  const unit = unitOf(panel);
  const opts = panel.options || {};
  const legendOpts = opts.legend || {};
  const legendMode = legendOpts.showLegend === false ? 'hidden' : (legendOpts.displayMode || 'list');
  const calcs = legendOpts.calcs || [];
  const stacking = (custom.stacking && custom.stacking.mode) || (panel.stack ? 'normal' : 'none');
  const drawStyle = custom.drawStyle || (panel.bars ? 'bars' : panel.points && !panel.lines ? 'points' : 'line');
  const fill = custom.fillOpacity !== undefined ? custom.fillOpacity : (panel.fill !== undefined ? panel.fill * 10 : 10);

  // Align every series on the union of timestamps.
  const tsSet = new Set();
  for (const f of frames) for (const x of f.times) tsSet.add(x);
  const xs = [...tsSet].sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  let ys = frames.map((f) => {
    const arr = new Array(xs.length).fill(null);
    f.times.forEach((x, i) => { arr[index.get(x)] = f.values[i]; });
    return arr;
  });
  const raw = ys;
  if (stacking === 'normal' || stacking === 'percent') {
    const totals = xs.map((_, i) => ys.reduce((a, s) => a + (s[i] ?? 0), 0));
    const acc = new Array(xs.length).fill(0);
    ys = ys.map((s) => s.map((v, i) => {
      if (v === null) return null;
      acc[i] += stacking === 'percent' ? (totals[i] ? v / totals[i] : 0) : v;
      return acc[i];
    }));
  }
  const chartEl = h('div', { class: 'ts-chart' });
  const legendEl = h('div', { class: `ts-legend ts-legend-${legendMode}` });
  const tooltip = h('div', { class: 'ts-tooltip', style: { display: 'none' } });
  body.append(chartEl, tooltip);
  if (legendMode !== 'hidden') body.append(legendEl);

  const colors = frames.map((f, i) => { const o = override(panel, f.name, 'color'); return o && o.fixedColor ? color(o.fixedColor) : PALETTE[i % PALETTE.length]; });
  const paths = drawStyle === 'bars' ? uPlot.paths.bars({ size: [0.8, 40] }) : undefined;
  const yUnit = stacking === 'percent' ? 'percentunit' : unit;
  const series = [{}].concat(frames.map((f, i) => ({
    label: f.name,
    stroke: colors[i],
    width: custom.lineWidth ?? 1,
    fill: fill > 0 ? hexAlpha(colors[i], fill / 100) : undefined,
    paths,
    points: { show: drawStyle === 'points' || xs.length < 3, size: custom.pointSize ?? 5 },
    spanGaps: custom.spanNulls === true,
    value: (_, v) => formatValue(v, yUnit),
  })));
  const thresholdSteps = (custom.thresholdsStyle && custom.thresholdsStyle.mode && custom.thresholdsStyle.mode !== 'off' && d.thresholds && d.thresholds.steps) || [];

  const width = Math.max(100, body.clientWidth - 4);
  const height = Math.max(60, body.clientHeight - (legendMode === 'hidden' ? 4 : legendMode === 'table' ? Math.min(24 + frames.length * 20, body.clientHeight / 2) : 28));
  const plot = new uPlot({
    width, height,
    legend: { show: false },
    cursor: { drag: { x: true, y: false, setScale: false } },
    select: { show: true },
    scales: { x: { time: true, min: ctx.from / 1000, max: ctx.to / 1000 }, y: { range: (u, min, max) => yRange(min, max, d) } },
    axes: [
      { stroke: '#9fa7b3', grid: { stroke: '#2c3235', width: 1 }, ticks: { stroke: '#2c3235' } },
      { stroke: '#9fa7b3', grid: { stroke: '#2c3235', width: 1 }, ticks: { stroke: '#2c3235' }, size: 60, values: (u, vals) => vals.map((v) => formatValue(v, yUnit)) },
    ],
    series,
    hooks: {
      setSelect: [(u) => {
        if (u.select.width > 5 && ctx.onZoom) {
          const a = u.posToVal(u.select.left, 'x') * 1000;
          const b = u.posToVal(u.select.left + u.select.width, 'x') * 1000;
          ctx.onZoom(Math.round(a), Math.round(b));
        }
      }],
      setCursor: [(u) => {
        const i = u.cursor.idx;
        if (i === null || i === undefined || u.cursor.left < 0) { tooltip.style.display = 'none'; return; }
        clear(tooltip);
        tooltip.append(h('div', { class: 'tt-time' }, fmtDate(xs[i])));
        frames.forEach((f, k) => {
          if (raw[k][i] === null) return;
          tooltip.append(h('div', { class: 'tt-row' }, h('span', { class: 'swatch', style: { background: colors[k] } }), h('span', { class: 'tt-name' }, f.name), h('b', null, formatValue(raw[k][i], unit))));
        });
        tooltip.style.display = 'block';
        const left = u.cursor.left + 70;
        tooltip.style.left = `${Math.min(left, width - 220)}px`;
        tooltip.style.top = `${Math.max(0, u.cursor.top - 10)}px`;
      }],
      draw: [(u) => {
        for (const s of thresholdSteps) {
          if (s.value === null || s.value === undefined) continue;
          const y = u.valToPos(s.value, 'y', true);
          if (y < u.bbox.top || y > u.bbox.top + u.bbox.height) continue;
          u.ctx.save();
          u.ctx.strokeStyle = color(s.color);
          u.ctx.setLineDash([6, 4]);
          u.ctx.beginPath();
          u.ctx.moveTo(u.bbox.left, y);
          u.ctx.lineTo(u.bbox.left + u.bbox.width, y);
          u.ctx.stroke();
          u.ctx.restore();
        }
      }],
    },
  }, [xs.map((x) => x / 1000), ...ys], chartEl);
  chartEl.addEventListener('mouseleave', () => { tooltip.style.display = 'none'; });

  if (legendMode !== 'hidden') {
    const rows = frames.map((f, i) => {
      const stats = calcs.map((c) => h('td', { class: 'num' }, formatValue(reduce(f.values, c), unit)));
      const row = h('tr', { class: 'legend-item', onclick: () => {
        const s = plot.series[i + 1];
        plot.setSeries(i + 1, { show: !s.show });
        row.classList.toggle('hidden-series', s.show === false);
      } }, h('td', null, h('span', { class: 'swatch', style: { background: colors[i] } }), f.name), stats);
      return row;
    });
    const head = calcs.length ? h('tr', null, h('th', null, ''), calcs.map((c) => h('th', null, calcName(c)))) : null;
    legendEl.append(h('table', null, head, rows));
  }
  return plot;
}

function calcName(c) {
  return { lastNotNull: 'Last *', last: 'Last', mean: 'Mean', max: 'Max', min: 'Min', sum: 'Total' }[c] || c;
}

function yRange(min, max, d) {
  let lo = d.min !== undefined && d.min !== null ? d.min : Math.min(0, min ?? 0);
  let hi = d.max !== undefined && d.max !== null ? d.max : (max ?? 1);
  if (hi === lo) hi = lo + 1;
  if (d.max === undefined || d.max === null) hi = hi + (hi - lo) * 0.05;
  return [lo, hi];
}

function hexAlpha(c, a) {
  if (/^#[0-9a-f]{6}$/i.test(c)) return c + Math.round(Math.min(1, a) * 255).toString(16).padStart(2, '0');
  return c;
}

// ---- stat / gauge / bargauge ----

function reduced(panel, frames) {
  const calc = ((panel.options && panel.options.reduceOptions && panel.options.reduceOptions.calcs) || ['lastNotNull'])[0];
  return frames.map((f) => ({ name: f.name, value: reduce(f.values, calc), frame: f }));
}

function mappedText(panel, v) {
  const maps = defaults(panel).mappings || [];
  for (const m of maps) {
    if (m.type === 'value' && m.options && v !== null) {
      const hit = m.options[String(v)];
      if (hit) return { text: hit.text ?? String(v), color: hit.color };
    }
    if (m.type === 'range' && m.options && v !== null) {
      const { from, to, result } = m.options;
      if ((from === null || from === undefined || v >= from) && (to === null || to === undefined || v <= to) && result) return { text: result.text ?? String(v), color: result.color };
    }
  }
  return null;
}

export function renderStat(body, panel, frames) {
  clear(body);
  const d = defaults(panel);
  const opts = panel.options || {};
  const items = reduced(panel, frames);
  const wrap = h('div', { class: 'stat-grid' });
  for (const it of items) {
    const m = mappedText(panel, it.value);
    const c = m && m.color ? color(m.color) : thresholdColor(it.value, d.thresholds, d.min ?? 0, d.max ?? 100);
    const bg = opts.colorMode === 'background';
    const cell = h('div', { class: 'stat', style: bg ? { background: c, color: '#fff' } : {} });
    if (items.length > 1 || opts.textMode === 'value_and_name') cell.append(h('div', { class: 'stat-name' }, it.name));
    cell.append(h('div', { class: 'stat-value', style: bg || opts.colorMode === 'none' ? {} : { color: c } }, m ? m.text : formatValue(it.value, d.unit, d.decimals)));
    if (opts.graphMode !== 'none' && it.frame.values.length > 1) cell.append(sparkline(it.frame.values, bg ? 'rgba(255,255,255,0.6)' : c));
    wrap.append(cell);
  }
  body.append(wrap);
}

function sparkline(values, c) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 100 30');
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('class', 'sparkline');
  const xs = values.filter((v) => v !== null && isFinite(v));
  const lo = Math.min(...xs), hi = Math.max(...xs);
  const pts = values.map((v, i) => `${(i / (values.length - 1)) * 100},${30 - ((v - lo) / ((hi - lo) || 1)) * 28 - 1}`).join(' ');
  const area = document.createElementNS(ns, 'polygon');
  area.setAttribute('points', `0,30 ${pts} 100,30`);
  area.setAttribute('fill', c);
  area.setAttribute('fill-opacity', '0.2');
  const line = document.createElementNS(ns, 'polyline');
  line.setAttribute('points', pts);
  line.setAttribute('fill', 'none');
  line.setAttribute('stroke', c);
  line.setAttribute('stroke-width', '1.5');
  line.setAttribute('vector-effect', 'non-scaling-stroke');
  svg.append(area, line);
  return svg;
}

export function renderGauge(body, panel, frames) {
  clear(body);
  const d = defaults(panel);
  const min = d.min ?? 0;
  const max = d.max ?? (d.unit === 'percentunit' ? 1 : 100);
  const wrap = h('div', { class: 'stat-grid' });
  const ns = 'http://www.w3.org/2000/svg';
  for (const it of reduced(panel, frames)) {
    const c = thresholdColor(it.value, d.thresholds, min, max);
    const frac = Math.max(0, Math.min(1, ((it.value ?? min) - min) / ((max - min) || 1)));
    const svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('viewBox', '0 0 120 75');
    svg.setAttribute('class', 'gauge');
    const arc = (f, col, w) => {
      const a0 = Math.PI, a1 = Math.PI + Math.PI * f;
      const p = document.createElementNS(ns, 'path');
      const x0 = 60 + 48 * Math.cos(a0), y0 = 65 + 48 * Math.sin(a0);
      const x1 = 60 + 48 * Math.cos(a1), y1 = 65 + 48 * Math.sin(a1);
      p.setAttribute('d', `M ${x0} ${y0} A 48 48 0 0 1 ${x1} ${y1}`);
      p.setAttribute('stroke', col);
      p.setAttribute('stroke-width', w);
      p.setAttribute('fill', 'none');
      return p;
    };
    svg.append(arc(1, '#2c3235', 12));
    if (frac > 0) svg.append(arc(Math.max(frac, 0.001), c, 12));
    const txt = document.createElementNS(ns, 'text');
    txt.setAttribute('x', '60');
    txt.setAttribute('y', '62');
    txt.setAttribute('text-anchor', 'middle');
    txt.setAttribute('fill', c);
    txt.setAttribute('font-size', '15');
    txt.textContent = formatValue(it.value, d.unit, d.decimals);
    svg.append(txt);
    wrap.append(h('div', { class: 'gauge-cell' }, svg, frames.length > 1 ? h('div', { class: 'stat-name' }, it.name) : null));
  }
  body.append(wrap);
}

export function renderBarGauge(body, panel, frames) {
  clear(body);
  const d = defaults(panel);
  const items = reduced(panel, frames);
  const min = d.min ?? 0;
  const max = d.max ?? Math.max(...items.map((i) => i.value ?? 0), 1);
  const wrap = h('div', { class: 'bargauge' });
  for (const it of items) {
    const c = thresholdColor(it.value, d.thresholds, min, max);
    const frac = Math.max(0, Math.min(1, ((it.value ?? min) - min) / ((max - min) || 1)));
    wrap.append(h('div', { class: 'bg-row' },
      h('div', { class: 'bg-name', title: it.name }, it.name),
      h('div', { class: 'bg-track' }, h('div', { class: 'bg-bar', style: { width: `${(frac * 100).toFixed(1)}%`, background: c } })),
      h('div', { class: 'bg-value', style: { color: c } }, formatValue(it.value, d.unit, d.decimals))));
  }
  body.append(wrap);
}

// ---- table ----

export function renderTable(body, panel, rows, columns) {
  clear(body);
  const d = defaults(panel);
  let sortCol = null, desc = false;
  const sortBy = (panel.options && panel.options.sortBy && panel.options.sortBy[0]) || null;
  if (sortBy) { sortCol = sortBy.displayName; desc = !!sortBy.desc; }
  const table = h('table', { class: 'data-table' });
  const draw = () => {
    clear(table);
    const sorted = [...rows];
    if (sortCol !== null) {
      sorted.sort((a, b) => {
        const x = a[sortCol], y = b[sortCol];
        const r = typeof x === 'number' && typeof y === 'number' ? x - y : String(x ?? '').localeCompare(String(y ?? ''));
        return desc ? -r : r;
      });
    }
    table.append(h('thead', null, h('tr', null, columns.map((c) => h('th', {
      class: 'sortable', onclick: () => { if (sortCol === c) desc = !desc; else { sortCol = c; desc = false; } draw(); },
    }, c, sortCol === c ? (desc ? ' ▼' : ' ▲') : '')))));
    table.append(h('tbody', null, sorted.map((r) => h('tr', null, columns.map((c) => {
      const v = r[c];
      const isNum = typeof v === 'number';
      const unit = override(panel, c, 'unit') ?? (c === 'Value' || c.startsWith('Value #') ? d.unit : undefined);
      return h('td', { class: isNum ? 'num' : '' }, isNum ? formatValue(v, unit, d.decimals) : (v ?? ''));
    })))));
  };
  draw();
  body.append(h('div', { class: 'table-wrap' }, table));
}

// ---- logs ----

const LEVELS = [['critical', 'crit'], ['fatal', 'crit'], ['error', 'error'], ['err', 'error'], ['warn', 'warn'], ['warning', 'warn'], ['info', 'info'], ['debug', 'debug'], ['trace', 'debug']];

export function logLevel(labels, line) {
  const l = (labels.level || labels.detected_level || labels.severity || labels.lvl || '').toLowerCase();
  const m = l || ((/"?(?:level|lvl|severity)"?\s*[:=]\s*"?([a-zA-Z]+)/.exec(line) || [])[1] || '').toLowerCase() || ((/\b(ERROR|WARN(?:ING)?|INFO|DEBUG|FATAL|CRITICAL)\b/.exec(line) || [])[1] || '').toLowerCase();
  for (const [k, v] of LEVELS) if (m === k) return v;
  return 'unknown';
}

export function parseFields(line) {
  const s = line.trim();
  if (s.startsWith('{')) {
    try {
      const o = JSON.parse(s);
      if (o && typeof o === 'object') return Object.entries(o).map(([k, v]) => [k, typeof v === 'object' ? JSON.stringify(v) : String(v)]);
    } catch (_) { /* not JSON */ }
  }
  const out = [];
  const re = /([a-zA-Z_][\w.-]*)=("(?:[^"\\]|\\.)*"|\S+)/g;
  let m;
  while ((m = re.exec(s)) !== null) out.push([m[1], m[2].startsWith('"') ? m[2].slice(1, -1) : m[2]]);
  return out;
}

export function renderLogs(body, panel, entries) {
  clear(body);
  const opts = panel.options || {};
  const list = h('div', { class: 'logs' });
  for (const e of entries) {
    const lvl = logLevel(e.labels, e.line);
    const row = h('div', { class: `log-row lvl-${lvl}` });
    const head = h('div', { class: 'log-head' },
      h('span', { class: 'log-lvl' }),
      opts.showTime !== false ? h('span', { class: 'log-time' }, fmtDate(e.ts)) : null,
      opts.showLabels ? h('span', { class: 'log-labels' }, Object.entries(e.labels).map(([k, v]) => `${k}=${v}`).join(' ')) : null,
      h('span', { class: `log-line${opts.wrapLogMessage ? ' wrap' : ''}` }, e.line));
    let details = null;
    head.addEventListener('click', () => {
      if (details) { details.remove(); details = null; return; }
      details = h('table', { class: 'log-details' },
        Object.entries(e.labels).map(([k, v]) => h('tr', null, h('td', { class: 'muted' }, t('labels')), h('td', null, k), h('td', null, v))),
        parseFields(e.line).map(([k, v]) => h('tr', null, h('td', { class: 'muted' }, 'field'), h('td', null, k), h('td', null, v))));
      row.append(details);
    });
    row.append(head);
    list.append(row);
  }
  body.append(list);
}

// ---- text ----

export function renderText(body, panel) {
  clear(body);
  const o = panel.options || {};
  const content = o.content ?? panel.content ?? '';
  const el = h('div', { class: 'text-panel' });
  if (o.mode === 'html' || panel.mode === 'html') {
    // HTML is shown as text: Lookout never injects panel markup.
    el.append(h('pre', null, content));
  } else {
    el.append(markdown(content));
  }
  body.append(el);
}
