// Drives headless Chromium (playwright-core, /usr/bin/chromium) through the UI of a running
// `lookout demo`: login with the forced password change, every panel of the six weAlist
// dashboards with data, render timing over 24 h (Performance API), step from pixel width,
// time range and variable changes, Explore (PromQL graph, LogQL logs) and a firing alert.
// Run by crates/lookout/tests/ui_demo.rs.
// Usage: node web/e2e/demo.mjs BASE_URL [SCREENSHOT_DIR] [TIMING_RANGE] [ALERT_WAIT_S] [BUDGET_MS]
import { chromium } from 'playwright-core';

const base = process.argv[2];
const shots = process.argv[3] || '';
const timingRange = process.argv[4] || '24h';
const alertWaitS = Number(process.argv[5] || 180);
const budgetMs = Number(process.argv[6] || 0);
const DASHBOARDS = [
  ['wealist-infra', 'infra'],
  ['wealist-planner', 'planner'],
  ['wealist-developer', 'developer'],
  ['wealist-db', 'db'],
  ['wealist-logs', 'logs'],
  ['wealist-service', 'service'],
];
const failures = [];
const fail = (m) => { console.error(`FAIL: ${m}`); failures.push(m); };
const fatal = async (m) => { console.error(`FAIL: ${m}`); await browser.close(); process.exit(1); };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});
const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
const errors = [];
page.on('pageerror', (e) => errors.push(String(e)));
page.on('dialog', (d) => { errors.push(`dialog: ${d.message()}`); d.dismiss(); });

async function ready() {
  await page.waitForFunction(() => document.body.dataset.dashboardReady, null, { timeout: 30000 });
}

/** Every panel's title, state, error text, points per series and width. */
async function panels() {
  return page.$$eval('.panel', (ps) => ps.map((p) => ({
    title: p.querySelector('.panel-title')?.textContent,
    type: p.dataset.type,
    state: p.dataset.state,
    nodata: !!p.querySelector('.nodata'),
    badge: !!p.querySelector('.err-badge'),
    err: p.querySelector('.panel-error')?.textContent,
    points: Number(p.dataset.points || 0),
    width: Number(p.dataset.widthPx || 0),
    finite: p.dataset.finite === undefined ? null : Number(p.dataset.finite),
  })));
}

function checkPanels(name, st) {
  // A chart or stat whose every value is NaN (0/0 ratios of idle counters) shows nothing either.
  const bad = st.filter((p) => p.state !== 'ok' || p.nodata || p.badge || p.err || p.finite === 0);
  for (const p of bad) fail(`${name}: panel "${p.title}" (${p.type}) is ${p.finite === 0 ? 'all NaN' : p.state}${p.err ? `: ${p.err}` : ''}`);
  const over = st.filter((p) => p.width && p.points > p.width);
  for (const p of over) fail(`${name}: panel "${p.title}" fetched ${p.points} points for ${p.width} px`);
  return bad.length === 0 && over.length === 0;
}

/** Fully drawn time after navigation start (Performance API), and query concurrency. */
async function timing() {
  return page.evaluate(() => {
    const mark = performance.getEntriesByName('lookout-dashboard-rendered')[0]?.startTime;
    const qs = performance.getEntriesByType('resource').filter((e) => /\/(api\/v1|loki\/api\/v1)\/query/.test(e.name));
    let peak = 0;
    for (const a of qs) peak = Math.max(peak, qs.filter((b) => b.startTime <= a.startTime && b.responseEnd > a.startTime).length);
    const nav = performance.getEntriesByType('navigation')[0];
    const slow = performance.getEntriesByType('measure').filter((m) => m.name.startsWith('query '))
      .map((m) => `${Math.round(m.duration)} ms ${m.name.slice(6, 90)}`).sort((a, b) => parseInt(b) - parseInt(a)).slice(0, 3);
    return { mark, queries: qs.length, peak, slow, dcl: nav ? nav.domContentLoadedEventEnd : 0, render: window.__lookoutRender };
  });
}

// ---- login with the forced password change ----
await page.goto(`${base}/`);
await page.waitForURL(/\/login/);
await page.fill('#login-user', 'admin');
await page.fill('#login-password', 'admin');
await page.click('#login-submit');
await page.waitForSelector('#new-password');
await page.fill('#new-password', 'demo-ui-pw');
await page.fill('#confirm-password', 'demo-ui-pw');
await page.click('#change-submit');
await page.waitForSelector('.dash-link');
const uids = await page.$$eval('.dash-link', (as) => as.map((a) => a.dataset.uid));
for (const [uid] of DASHBOARDS) if (!uids.includes(uid)) await fatal(`dashboard ${uid} not listed (${uids})`);
console.log(`login + forced password change ok; ${uids.length} dashboards listed`);

// ---- a firing alert on the alerts page ----
const deadline = Date.now() + alertWaitS * 1000;
let firing = [];
while (Date.now() < deadline) {
  firing = await page.evaluate(async () => {
    const r = await fetch('/api/v1/alerts');
    const j = await r.json();
    return ((j.data && j.data.alerts) || []).filter((a) => a.state === 'firing').map((a) => `${a.labels.alertname}{job=${a.labels.job || ''}}`);
  });
  if (firing.length) break;
  await page.waitForTimeout(2000);
}
if (!firing.length) {
  fail(`no alert fired within ${alertWaitS} s`);
} else {
  await page.goto(`${base}/alerting`);
  await page.waitForSelector('#active-alerts');
  const rows = await page.$$eval('#active-alerts tr.alert-firing', (rs) => rs.map((r) => r.textContent));
  if (!rows.length) fail(`alerts page shows no firing alert (API: ${firing})`);
  if (shots) await page.screenshot({ path: `${shots}/alerts.png` });
  console.log(`alerts page ok: ${rows.length} firing (${firing.join(', ')})`);
}


// ---- the six dashboards, every panel with data ----
for (const [uid, name] of DASHBOARDS) {
  await page.goto(`${base}/d/${uid}/${name}`);
  await ready();
  const st = await panels();
  const ok = checkPanels(name, st);
  const t = await timing();
  const maxPts = st.reduce((a, p) => Math.max(a, p.points), 0);
  console.log(`${name}: ${st.filter((p) => p.state === 'ok').length}/${st.length} panels with data${ok ? '' : ' (FAILED)'}; drawn ${Math.round(t.mark)} ms after navigation; ${t.queries} queries, ${t.peak} in flight at once; max ${maxPts} points per series`);
  if (shots) await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
}

// ---- render timing: dashboards over the timing range, fresh navigation each ----
for (const [uid, name] of [['wealist-infra', 'infra'], ['wealist-planner', 'planner']]) {
  const runs = [];
  let st = [];
  for (let i = 0; i < 3; i++) {
    await page.goto(`${base}/d/${uid}/${name}?from=now-${timingRange}&to=now`);
    await ready();
    runs.push(await timing());
    st = await panels();
  }
  checkPanels(`${name} ${timingRange}`, st);
  const ms = runs.map((r) => Math.round(r.mark)).sort((a, b) => a - b);
  const widthOk = st.every((p) => !p.width || p.points <= p.width);
  const maxPts = st.reduce((a, p) => Math.max(a, p.points), 0);
  const minW = st.filter((p) => p.width).reduce((a, p) => Math.min(a, p.width), 1e9);
  console.log(`RENDER ${name} ${timingRange}: ${st.length} panels fully drawn ${ms.join(' / ')} ms after navigation (median ${ms[1]}); ${runs[1].queries} queries, up to ${runs[1].peak} in flight at once; max ${maxPts} points per series (narrowest panel ${minW} px, all within width: ${widthOk})`);
  console.log(`  slowest queries: ${runs[1].slow.join(' | ')}`);
  if (budgetMs && ms[1] >= budgetMs) fail(`${name} over ${timingRange}: median ${ms[1]} ms >= ${budgetMs} ms`);
  if (runs[1].peak < 2) fail(`${name}: panel queries did not run in parallel (peak ${runs[1].peak})`);
}

// ---- time range change (picker) ----
await page.goto(`${base}/d/wealist-infra/infra`);
await ready();
await page.click('#time-picker');
await page.click('[data-range="15m"]');
await page.waitForFunction(() => location.search.includes('from=now-15m'));
await page.waitForFunction(() => document.querySelector('#time-picker')?.textContent.includes('15m'));
await ready();
await page.waitForFunction(() => [...document.querySelectorAll('.panel')].every((p) => p.dataset.state !== 'loading'));
checkPanels('infra 15m', await panels());
console.log('time range change ok (infra, last 15m, all panels with data)');

// ---- variable change on the service dashboard ----
await page.goto(`${base}/d/wealist-service/service?var-service=user-service`);
await ready();
const options = await page.$$eval('select[data-var="service"] option', (os) => os.map((o) => o.value));
const other = options.includes('board-service') ? 'board-service' : options.find((o) => o !== 'user-service');
if (!other) await fatal(`service variable has no other value: ${options}`);
await page.selectOption('select[data-var="service"]', other);
await page.waitForFunction((s) => location.search.includes(`var-service=${s}`), other);
await page.waitForFunction((s) => [...document.querySelectorAll('.panel-title')].some((e) => e.textContent.includes(s)), other);
await page.waitForFunction(() => [...document.querySelectorAll('.panel')].every((p) => p.dataset.state !== 'loading'));
checkPanels(`service ${other}`, await panels());
const logLabels = await page.$$eval('.panel[data-type="logs"] .log-row', (rs) => rs.length);
if (!logLabels) fail(`service ${other}: no log lines`);
console.log(`variable change ok (service=${other}, ${options.length} services, ${logLabels} log lines)`);

// ---- Explore: PromQL graph, LogQL logs ----
await page.goto(`${base}/explore?mode=promql&range=1h&q=${encodeURIComponent('sum by (job) (rate(http_requests_total[1m]))')}`);
await page.waitForFunction(() => ['ok', 'error', 'nodata'].includes(document.getElementById('explore-result')?.dataset.state));
let ex = await page.$eval('#explore-result', (e) => [e.dataset.state, e.textContent.slice(0, 200)]);
if (ex[0] !== 'ok' || !(await page.$('#explore-result canvas'))) fail(`explore PromQL: ${ex}`);
if (shots) await page.screenshot({ path: `${shots}/explore.png` });
console.log('explore PromQL graph ok');
await page.goto(`${base}/explore?mode=logql&range=1h&q=${encodeURIComponent('{compose_service="board-service"} | json | status >= 500')}`);
await page.waitForFunction(() => ['ok', 'error', 'nodata'].includes(document.getElementById('explore-result')?.dataset.state));
ex = await page.$eval('#explore-result', (e) => [e.dataset.state, e.textContent.slice(0, 200)]);
const lines = await page.$$eval('#explore-result .log-row', (rs) => rs.length);
if (ex[0] !== 'ok' || !lines) fail(`explore LogQL: ${ex}`);
if (shots) await page.screenshot({ path: `${shots}/explore-logs.png` });
console.log(`explore LogQL logs ok (${lines} lines)`);

// ---- XSS through a log line and a label value (after the screenshots) ----
const evil = '<img src=x onerror="window.__xss=4"><script>window.__xss=5</script> error';
const evilLabel = '<b onmouseover="window.__xss=6">x</b>';
const pushed = await page.evaluate(async ([line, label]) => {
  const ns = `${Date.now()}000000`;
  const r = await fetch('/loki/api/v1/push', { method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ streams: [{ stream: { compose_service: 'xss-probe', probe: label }, values: [[ns, line]] }] }) });
  return r.status;
}, [evil, evilLabel]);
if (pushed !== 204 && pushed !== 200) fail(`pushing the XSS probe line: HTTP ${pushed}`);
await page.goto(`${base}/explore?mode=logql&range=15m&q=${encodeURIComponent('{compose_service="xss-probe"}')}`);
await page.waitForFunction(() => ['ok', 'error', 'nodata'].includes(document.getElementById('explore-result')?.dataset.state));
const shownLine = await page.$eval('#explore-result .log-line', (e) => e.textContent).catch(() => null);
if (shownLine !== evil) fail(`log line not shown literally in Explore: ${shownLine}`);
await page.click('#explore-result .log-head');
const details = await page.$$eval('#explore-result .log-details td', (tds) => tds.map((t) => t.textContent));
if (!details.includes(evilLabel)) fail(`label value not shown literally in the log details: ${details}`);
await page.goto(`${base}/d/wealist-developer/developer?from=now-15m&to=now`);
await ready();
const inPanel = await page.$$eval('.panel[data-type="logs"] .log-line', (ls) => ls.map((l) => l.textContent));
if (!inPanel.includes(evil)) fail('log line with markup not shown literally in the developer logs panel');
await page.hover('.panel[data-type="logs"] .log-line').catch(() => {});
const xss = await page.evaluate(() => window.__xss);
if (xss !== undefined) fail(`XSS executed: ${xss}`);
else console.log('xss escaped (log line in Explore and a logs panel, label value in the log details)');

if (errors.length) fail(`page errors: ${errors.join('; ')}`);
await browser.close();
if (failures.length) {
  console.error(`${failures.length} failures`);
  process.exit(1);
}
console.log('ALL OK');
