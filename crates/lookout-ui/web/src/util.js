// DOM building without innerHTML: every string becomes a text node, so label values, log
// lines and titles can never inject markup.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'style' && typeof v === 'object') Object.assign(el.style, v);
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'value') el.value = v;
      else if (k === 'checked') el.checked = !!v;
      else if (k === 'href') el.setAttribute('href', safeHref(String(v)));
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/** Only http(s), mailto and same-site links; anything else (javascript:, data:) becomes '#'. */
export function safeHref(u) {
  const s = u.trim();
  if (/^(https?:|mailto:)/i.test(s) || s.startsWith('/') || s.startsWith('#') || s.startsWith('?')) return s;
  if (!/^[a-z][a-z0-9+.-]*:/i.test(s)) return s;
  return '#';
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

// ---- time ----

const UNIT_MS = { ms: 1, s: 1e3, m: 6e4, h: 36e5, d: 864e5, w: 6048e5, y: 31536e6 };

/** Prometheus duration ("1h30m", "5m", "250ms") to milliseconds; NaN when invalid. */
export function parseDuration(s) {
  if (typeof s !== 'string' || !s) return NaN;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)/g;
  let total = 0, m, pos = 0;
  while ((m = re.exec(s)) !== null) {
    if (m.index !== pos) return NaN;
    total += parseFloat(m[1]) * UNIT_MS[m[2]];
    pos = re.lastIndex;
  }
  return pos === s.length ? total : NaN;
}

export function formatDuration(ms) {
  if (!isFinite(ms) || ms <= 0) return '0s';
  for (const [u, n] of [['d', 864e5], ['h', 36e5], ['m', 6e4], ['s', 1e3]]) {
    if (ms >= n && ms % n === 0) return `${ms / n}${u}`;
  }
  return ms >= 1000 ? `${Math.round(ms / 1000)}s` : `${Math.round(ms)}ms`;
}

/** Grafana time expressions: "now", "now-6h", "now-1d/d", epoch ms, or a date string. */
export function parseTime(s, roundUp = false) {
  if (s === undefined || s === null || s === '') return NaN;
  s = String(s).trim();
  if (/^\d{10,}$/.test(s)) return parseInt(s, 10);
  const m = /^now(?:([+-])(\d+(?:ms|s|m|h|d|w|y)))?(?:\/([smhdwy]))?$/.exec(s);
  if (m) {
    let t = Date.now();
    if (m[1]) t += (m[1] === '-' ? -1 : 1) * parseDuration(m[2]);
    if (m[3]) {
      const unit = { s: 1e3, m: 6e4, h: 36e5 }[m[3]];
      const d = new Date(t);
      if (unit) t = Math.floor(t / unit) * unit + (roundUp ? unit - 1 : 0);
      else if (m[3] === 'd') {
        d.setHours(0, 0, 0, 0);
        t = d.getTime() + (roundUp ? 864e5 - 1 : 0);
      } else t = Math.floor(t / 864e5) * 864e5;
    }
    return t;
  }
  const d = Date.parse(s.replace(' ', 'T'));
  return isNaN(d) ? NaN : d;
}

export function fmtDate(ms, withSeconds = true) {
  const d = new Date(ms);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}${withSeconds ? ':' + p(d.getSeconds()) : ''}`;
}

// ---- units ----

function scaled(v, base, units, decimals) {
  let i = 0;
  let x = Math.abs(v);
  while (x >= base && i < units.length - 1) { x /= base; i++; }
  return `${round(Math.sign(v) * x, decimals)} ${units[i]}`.trim();
}

function round(v, decimals) {
  if (!isFinite(v)) return String(v);
  if (decimals !== undefined && decimals !== null) return v.toFixed(decimals);
  const a = Math.abs(v);
  const d = a === 0 ? 0 : a >= 100 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : 3;
  return String(parseFloat(v.toFixed(d)));
}

/** Formats a value in a Grafana unit (bytes, s, ms, percent, percentunit, reqps, short, ...). */
export function formatValue(v, unit, decimals) {
  if (v === null || v === undefined || Number.isNaN(v)) return '-';
  if (!isFinite(v)) return v > 0 ? '+Inf' : '-Inf';
  switch (unit) {
    case 'bytes': case 'decbytes':
      return scaled(v, unit === 'bytes' ? 1024 : 1000, ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'].map((u) => unit === 'bytes' ? u : u.replace('i', '')), decimals);
    case 'bits': return scaled(v, 1000, ['b', 'kb', 'Mb', 'Gb', 'Tb'], decimals);
    case 'Bps': case 'binBps': return scaled(v, 1024, ['B/s', 'KiB/s', 'MiB/s', 'GiB/s'], decimals);
    case 's': return formatSeconds(v, decimals);
    case 'ms': return formatSeconds(v / 1000, decimals);
    case 'µs': return formatSeconds(v / 1e6, decimals);
    case 'percent': return `${round(v, decimals)}%`;
    case 'percentunit': return `${round(v * 100, decimals)}%`;
    case 'reqps': return `${short(v, decimals)} req/s`;
    case 'ops': return `${short(v, decimals)} ops/s`;
    case 'rps': return `${short(v, decimals)} rd/s`;
    case 'wps': return `${short(v, decimals)} wr/s`;
    case 'none': return round(v, decimals);
    case 'dateTimeAsIso': return fmtDate(v);
    case undefined: case '': case 'short': return short(v, decimals);
    default:
      if (unit && unit.startsWith('suffix:')) return `${short(v, decimals)}${unit.slice(7)}`;
      return `${short(v, decimals)}${unit ? ' ' + unit : ''}`;
  }
}

function short(v, decimals) {
  return scaled(v, 1000, ['', 'K', 'Mil', 'Bil', 'Tri'], decimals);
}

function formatSeconds(v, decimals) {
  const a = Math.abs(v);
  if (a === 0) return '0 s';
  if (a < 1e-6) return `${round(v * 1e9, decimals)} ns`;
  if (a < 1e-3) return `${round(v * 1e6, decimals)} µs`;
  if (a < 1) return `${round(v * 1e3, decimals)} ms`;
  if (a < 60) return `${round(v, decimals)} s`;
  if (a < 3600) return `${round(v / 60, decimals)} min`;
  if (a < 86400) return `${round(v / 3600, decimals)} hour`;
  return `${round(v / 86400, decimals)} day`;
}

// ---- reducers (Grafana's reduceOptions.calcs) ----

export function reduce(values, calc) {
  const xs = values.filter((v) => v !== null && v !== undefined && !Number.isNaN(v));
  if (!xs.length) return null;
  switch (calc) {
    case 'min': return Math.min(...xs);
    case 'max': return Math.max(...xs);
    case 'mean': case 'avg': return xs.reduce((a, b) => a + b, 0) / xs.length;
    case 'sum': case 'total': return xs.reduce((a, b) => a + b, 0);
    case 'first': case 'firstNotNull': return xs[0];
    case 'count': return xs.length;
    case 'delta': return xs[xs.length - 1] - xs[0];
    case 'range': return Math.max(...xs) - Math.min(...xs);
    default: return xs[xs.length - 1];
  }
}

// ---- thresholds and colours ----

const NAMED = {
  green: '#73bf69', red: '#f2495c', yellow: '#fade2a', orange: '#ff9830', blue: '#5794f2',
  purple: '#b877d9', 'dark-green': '#37872d', 'dark-red': '#c4162a', 'dark-yellow': '#e0b400',
  'dark-orange': '#fa6400', 'dark-blue': '#1f60c4', 'semi-dark-green': '#56a64b', 'semi-dark-red': '#e02f44',
  'light-green': '#96d98d', 'light-red': '#ff7383', 'light-blue': '#8ab8ff', 'text': '#d8d9da', transparent: 'transparent',
};

export function color(c) {
  if (!c) return NAMED.green;
  return NAMED[c] || (/^#[0-9a-f]{3,8}$/i.test(c) || /^rgba?\([\d\s.,%]+\)$/i.test(c) ? c : NAMED.green);
}

export const PALETTE = ['#73bf69', '#f2cc0c', '#5794f2', '#ff780a', '#f2495c', '#b877d9', '#8ab8ff', '#fade2a', '#37872d', '#1f60c4', '#e0752d', '#c4162a', '#96d98d', '#ca95e5', '#ffb357'];

/** The colour of a value under a panel's thresholds (absolute or percentage mode). */
export function thresholdColor(v, thresholds, min = 0, max = 100) {
  const steps = (thresholds && thresholds.steps) || [];
  if (!steps.length || v === null || v === undefined) return NAMED.green;
  const x = thresholds.mode === 'percentage' ? ((v - min) / ((max - min) || 1)) * 100 : v;
  let c = steps[0].color;
  for (const s of steps) {
    if (s.value === null || s.value === undefined || x >= s.value) c = s.color;
  }
  return color(c);
}

/** Renders "{{label}}" templates against a label set (Prometheus legendFormat). */
export function legend(fmt, labels, expr) {
  if (fmt && fmt !== '__auto') {
    return fmt.replace(/\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}/g, (_, k) => labels[k] ?? '');
  }
  const { __name__: name, ...rest } = labels;
  const inner = Object.entries(rest).map(([k, v]) => `${k}="${v}"`).join(', ');
  if (!name && !inner) return expr || '';
  return `${name || ''}${inner ? `{${inner}}` : ''}`;
}

export function debounce(fn, ms) {
  let t;
  return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); };
}
