// Drives headless Chromium (playwright-core, /usr/bin/chromium) through the UI:
// login with forced password change, dashboards, time range, variables, Explore, XSS.
// Run by tests/browser.rs. Usage: node web/e2e/ui.mjs BASE_URL [SCREENSHOT_DIR]
import { chromium } from 'playwright-core';

const base = process.argv[2];
const shots = process.argv[3];
const fail = (m) => { console.error(`FAIL: ${m}`); process.exit(1); };
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] });
const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
const errors = [];
page.on('pageerror', (e) => errors.push(String(e)));
page.on('dialog', (d) => { errors.push(`dialog: ${d.message()}`); d.dismiss(); });

async function ready() {
  await page.waitForFunction(() => document.body.dataset.dashboardReady, null, { timeout: 15000 });
}
async function states() {
  return page.$$eval('.panel', (ps) => ps.map((p) => ({ title: p.querySelector('.panel-title')?.textContent, state: p.dataset.state, err: p.querySelector('.panel-error')?.textContent })));
}

// Login, forced change.
await page.goto(`${base}/`);
await page.waitForURL(/\/login/);
await page.fill('#login-user', 'admin');
await page.fill('#login-password', 'admin');
await page.click('#login-submit');
await page.waitForSelector('#new-password');
await page.fill('#new-password', 'browser-pw');
await page.fill('#confirm-password', 'browser-pw');
await page.click('#change-submit');
await page.waitForSelector('.dash-link');
const cookie = (await page.context().cookies()).find((c) => c.name === 'lookout_session');
if (!cookie || !cookie.httpOnly || cookie.sameSite !== 'Lax') fail(`session cookie ${JSON.stringify(cookie)}`);
const uids = await page.$$eval('.dash-link', (as) => as.map((a) => a.dataset.uid));
for (const u of ['wealist-planner', 'wealist-infra', 'wealist-developer', 'wealist-db', 'wealist-logs', 'wealist-service']) {
  if (!uids.includes(u)) fail(`dashboard ${u} not listed (${uids})`);
}
console.log(`login + forced password change ok; ${uids.length} dashboards listed`);

// Infra dashboard: HTTP panels render data; nothing errors; timing.
const t0 = Date.now();
await page.goto(`${base}/d/wealist-infra/infra?from=now-2h&to=now`);
await ready();
const wall = Date.now() - t0;
const timing = await page.evaluate(() => ({ render: window.__lookoutRender, nav: performance.getEntriesByType('navigation')[0]?.startTime ?? 0, mark: performance.getEntriesByName('lookout-dashboard-rendered')[0]?.startTime }));
let st = await states();
const bad = st.filter((p) => p.state === 'error' || p.state === 'unsupported' || p.state === 'loading');
if (bad.length) fail(`infra panels failed: ${JSON.stringify(bad)}`);
for (const title of ['서비스별 RPS / Requests per second', '서비스별 p95 / p95 latency per service', '전체 RPS / Total RPS']) {
  const p = st.find((x) => x.title === title);
  if (!p || p.state !== 'ok') fail(`panel ${title} has no data: ${JSON.stringify(p)}`);
}
if (!(await page.$('.panel[data-type="timeseries"][data-state="ok"] canvas'))) fail('no chart drawn');
console.log(`infra: ${st.filter((p) => p.state === 'ok').length}/${st.length} panels with data; drawn ${Math.round(timing.mark)} ms after navigation start (${timing.render.panels} panels, wall ${wall} ms)`);
if (shots) await page.screenshot({ path: `${shots}/infra.png`, fullPage: true });

// Time range change through the picker.
await page.click('#time-picker');
await page.click('[data-range="1h"]');
await page.waitForFunction(() => location.search.includes('from=now-1h'));
await ready();
console.log('time range change ok');

// Variable change on the service dashboard.
await page.goto(`${base}/d/wealist-service/service?var-service=user-service`);
await ready();
await page.selectOption('select[data-var="service"]', 'board-service');
await page.waitForFunction(() => location.search.includes('var-service=board-service'));
await page.waitForFunction(() => [...document.querySelectorAll('.panel-title')].some((e) => e.textContent.includes('board-service')));
// The titles change before the panels' new queries answer: wait until none is loading.
await page.waitForFunction(() => [...document.querySelectorAll('.panel')].every((p) => p.dataset.state !== 'loading'), null, { timeout: 15000 });
st = await states();
if (st.find((p) => p.title === 'RPS')?.state !== 'ok') fail(`service RPS after variable change: ${JSON.stringify(st)}`);
console.log('variable change ok');

// XSS through a dashboard title and label values: shown as text, never executed.
const evil = '<img src=x onerror="window.__xss=1">';
const saved = await page.evaluate(async (title) => {
  const r = await fetch('/api/dashboards/db', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ dashboard: { title, panels: [
    { id: 1, type: 'table', title, gridPos: { x: 0, y: 0, w: 24, h: 8 }, targets: [{ refId: 'A', expr: 'sum by (path) (http_requests_total)', instant: true }] },
    { id: 2, type: 'text', title: 'md', gridPos: { x: 0, y: 8, w: 12, h: 4 }, options: { mode: 'markdown', content: `# ${title}\n[x](javascript:window.__xss=2)` } },
    { id: 3, type: 'weird-plugin', title: 'unknown', gridPos: { x: 12, y: 8, w: 12, h: 4 } }] } }) });
  return r.json();
}, evil);
await page.goto(`${base}${saved.url}`);
await ready();
await page.click('.md a').catch(() => {});
const xss = await page.evaluate(() => window.__xss);
if (xss !== undefined) fail(`XSS executed: ${xss}`);
const shown = await page.textContent('.dash-title');
if (shown !== evil) fail(`title not shown literally: ${shown}`);
const cells = await page.$$eval('.data-table td', (tds) => tds.map((t) => t.textContent));
if (!cells.some((c) => c.includes('<img'))) fail(`label value with markup not shown as text: ${cells}`);
if ((await page.textContent('.panel[data-type="weird-plugin"]')).indexOf('weird-plugin') < 0) fail('unknown panel type has no placeholder');
console.log('xss escaped (title, label values, markdown link); unknown panel placeholder ok');

// Explore: PromQL graph.
await page.goto(`${base}/explore?mode=promql&q=${encodeURIComponent('sum by (job) (rate(http_requests_total[5m]))')}`);
await page.waitForFunction(() => ['ok', 'error', 'nodata'].includes(document.getElementById('explore-result')?.dataset.state));
const ex = await page.$eval('#explore-result', (e) => [e.dataset.state, e.textContent]);
if (ex[0] !== 'ok') fail(`explore: ${ex}`);
if (shots) await page.screenshot({ path: `${shots}/explore.png` });
console.log('explore PromQL ok');

// Language switch.
await page.selectOption('#lang-switch', 'ko');
await page.waitForFunction(() => document.querySelector('[data-nav="explore"]')?.textContent === '탐색');
console.log('language switch ok');

if (errors.length) fail(`page errors: ${errors.join('; ')}`);
await browser.close();
console.log(`RENDER_MS=${Math.round(timing.mark)}`);
