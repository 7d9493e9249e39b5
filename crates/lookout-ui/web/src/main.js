// Lookout UI entry: the app shell (navigation, language switch, user menu) and the router.

import 'uplot/dist/uPlot.min.css';
import './style.css';
import { h, clear } from './util.js';
import { t, getLang, setLang } from './i18n.js';
import * as api from './api.js';
import { showDashboard, stopDashboard } from './dashboard.js';
import { showExplore } from './explore.js';
import { showLogin, showDashboards, showImport, showAlerts, showTargets, showStatus, showTokens } from './pages.js';

const app = document.getElementById('app');
let user = null;

function navigate(url) {
  history.pushState(null, '', url);
  route();
}

function shell(active) {
  clear(app);
  const link = (href, key) => h('a', { href, class: active === key ? 'nav active' : 'nav', 'data-nav': key }, t(key));
  const langSel = h('select', { class: 'select lang', id: 'lang-switch', 'aria-label': t('language'), onchange: (e) => { setLang(e.target.value); route(); } },
    h('option', { value: 'ko', selected: getLang() === 'ko' }, '한국어'), h('option', { value: 'en', selected: getLang() === 'en' }, 'English'));
  const main = h('main', { id: 'main' });
  app.append(h('nav', { class: 'topbar' },
    h('a', { href: '/', class: 'brand' }, 'Lookout'),
    link('/dashboards', 'dashboards'), link('/explore', 'explore'), link('/alerting', 'alerting'), link('/targets', 'targets'), link('/status', 'status'),
    user && user.role === 'Admin' ? link('/admin/tokens', 'tokens') : null,
    h('span', { class: 'spacer' }), langSel,
    h('span', { class: 'user', id: 'current-user' }, user ? user.login : ''),
    h('a', { href: '/logout', class: 'nav', 'data-external': '1' }, t('logout'))), main);
  return main;
}

async function route() {
  stopDashboard();
  const path = location.pathname;
  const params = new URLSearchParams(location.search);
  if (path === '/login') {
    user = null;
    showLogin(app, params, (to) => { location.href = to; });
    return;
  }
  try {
    user = await api.get('/api/user');
  } catch (e) {
    if (e.status === 0) { clear(app).append(h('div', { class: 'panel-error' }, e.message)); }
    return;
  }
  if (user.mustChangePassword) { location.href = '/login?change=1'; return; }
  try {
    let m;
    if (path === '/' || path === '/dashboards') await showDashboards(shell('dashboards'), user);
    else if ((m = /^\/d\/([^/]+)/.exec(path))) await showDashboard(shell('dashboards'), decodeURIComponent(m[1]), params);
    else if (path === '/dashboard/new') await showDashboard(shell('dashboards'), null, params);
    else if (path === '/dashboard/import') showImport(shell('dashboards'), navigate);
    else if (path === '/explore') await showExplore(shell('explore'), params);
    else if (path === '/alerting') await showAlerts(shell('alerting'));
    else if (path === '/targets') await showTargets(shell('targets'));
    else if (path === '/status') await showStatus(shell('status'));
    else if (path === '/admin/tokens') await showTokens(shell('tokens'));
    else shell('').append(h('div', { class: 'page' }, h('h1', null, '404'), h('p', null, path)));
  } catch (e) {
    const main = document.getElementById('main') || app;
    main.append(h('div', { class: 'panel-error' }, e.message));
  }
}

// Same-origin links navigate inside the app.
document.addEventListener('click', (e) => {
  const a = e.target.closest && e.target.closest('a');
  if (!a || a.target || a.hasAttribute('download') || a.dataset.external || e.ctrlKey || e.metaKey || e.shiftKey) return;
  const href = a.getAttribute('href');
  if (!href || !href.startsWith('/') || href.startsWith('//') || href.startsWith('/api/')) return;
  e.preventDefault();
  navigate(href);
});
window.addEventListener('popstate', route);
api.onServerBack(route);
setLang(getLang());
route();
