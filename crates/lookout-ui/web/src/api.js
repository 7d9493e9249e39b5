// Talking to the server: the UI's own API, and the Prometheus and Loki query APIs on the same
// origin. A network failure shows the "server down" banner and polls until it is back.

import { t } from './i18n.js';

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

let down = false;
const downListeners = [];
export function onServerBack(fn) { downListeners.push(fn); }

function setDown(v) {
  if (down === v) return;
  down = v;
  let b = document.getElementById('server-down');
  if (v) {
    if (!b) {
      b = document.createElement('div');
      b.id = 'server-down';
      b.className = 'banner-down';
      b.textContent = t('serverDown');
      document.body.prepend(b);
    }
    poll();
  } else {
    if (b) b.remove();
    for (const fn of downListeners) fn();
  }
}

async function poll() {
  while (down) {
    await new Promise((r) => setTimeout(r, 3000));
    try {
      const r = await fetch('/api/health', { cache: 'no-store' });
      if (r.ok) setDown(false);
    } catch (_) { /* still down */ }
  }
}

export async function request(method, url, body, opts = {}) {
  let r;
  try {
    r = await fetch(url, {
      method,
      headers: body !== undefined ? { 'Content-Type': opts.form ? 'application/x-www-form-urlencoded' : 'application/json' } : {},
      body: body === undefined ? undefined : opts.form ? body : JSON.stringify(body),
      credentials: 'same-origin',
      signal: opts.signal,
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    setDown(true);
    throw new ApiError(0, t('serverDown'));
  }
  if (r.status === 502) setDown(true);
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  if (!r.ok) {
    if (r.status === 401 && !opts.noRedirect && location.pathname !== '/login') {
      location.href = '/login?redirect=' + encodeURIComponent(location.pathname + location.search);
    }
    if (r.status === 403 && data && data.message === 'password change required' && location.pathname !== '/login') {
      location.href = '/login?change=1';
    }
    const msg = (data && (data.error || data.message)) || text || `HTTP ${r.status}`;
    throw new ApiError(r.status, msg);
  }
  return data;
}

export const get = (url, opts) => request('GET', url, undefined, opts);
export const post = (url, body, opts) => request('POST', url, body, opts);
export const put = (url, body, opts) => request('PUT', url, body, opts);
export const del = (url, opts) => request('DELETE', url, undefined, opts);

function form(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (Array.isArray(v)) v.forEach((x) => u.append(k, x));
    else if (v !== undefined && v !== null) u.append(k, String(v));
  }
  return u.toString();
}

// ---- Prometheus ----

/** Times a query as a User Timing measure (`query <expr>`, visible in DevTools). */
async function timed(expr, fn) {
  const start = performance.now();
  try {
    return await fn();
  } finally {
    try { performance.measure(`query ${expr}`, { start }); } catch (_) { /* old browsers */ }
  }
}

export async function promRange(expr, startMs, endMs, stepS, signal) {
  const r = await timed(expr, () => request('POST', '/api/v1/query_range', form({ query: expr, start: startMs / 1000, end: endMs / 1000, step: stepS }), { form: true, signal }));
  return r.data;
}

export async function promInstant(expr, timeMs, signal) {
  const r = await timed(expr, () => request('POST', '/api/v1/query', form({ query: expr, time: timeMs / 1000 }), { form: true, signal }));
  return r.data;
}

export async function promLabelValues(label, match, startMs, endMs) {
  const q = form({ 'match[]': match ? [match] : undefined, start: startMs ? startMs / 1000 : undefined, end: endMs ? endMs / 1000 : undefined });
  const r = await get(`/api/v1/label/${encodeURIComponent(label)}/values${q ? '?' + q : ''}`);
  return r.data || [];
}

export async function promLabelNames(match) {
  const r = await get(`/api/v1/labels${match ? '?' + form({ 'match[]': [match] }) : ''}`);
  return r.data || [];
}

// ---- Loki ----

export async function lokiRange(expr, startMs, endMs, stepS, limit, signal, direction = 'backward') {
  const q = form({ query: expr, start: Math.round(startMs * 1e6), end: Math.round(endMs * 1e6), step: stepS, limit, direction });
  const r = await timed(expr, () => get(`/loki/api/v1/query_range?${q}`, { signal }));
  return r.data;
}

export async function lokiInstant(expr, timeMs, signal) {
  const r = await timed(expr, () => get(`/loki/api/v1/query?${form({ query: expr, time: Math.round(timeMs * 1e6) })}`, { signal }));
  return r.data;
}

export async function lokiLabelNames() {
  const r = await get('/loki/api/v1/labels');
  return r.data || [];
}

export async function lokiLabelValues(label) {
  const r = await get(`/loki/api/v1/label/${encodeURIComponent(label)}/values`);
  return r.data || [];
}
