// Login and password change, the dashboard list and import, alerts, targets, status, tokens.

import { h, clear, fmtDate } from './util.js';
import { t } from './i18n.js';
import * as api from './api.js';

export function showLogin(root, params, onDone) {
  clear(root);
  const msg = h('div', { class: 'form-error', id: 'login-error' });
  let oldPassword = '';
  const changeForm = () => {
    clear(card);
    const np = h('input', { type: 'password', id: 'new-password', autocomplete: 'new-password' });
    const cp = h('input', { type: 'password', id: 'confirm-password', autocomplete: 'new-password' });
    const op = h('input', { type: 'password', id: 'old-password', value: oldPassword });
    card.append(h('h1', null, t('changePassword')), h('p', { class: 'muted' }, t('changePasswordHint')),
      h('form', { onsubmit: async (e) => {
        e.preventDefault();
        try {
          await api.put('/api/user/password', { oldPassword: op.value, newPassword: np.value, confirmNew: cp.value }, { noRedirect: true });
          onDone(params.get('redirect') || '/');
        } catch (err) { msg.textContent = err.message; }
      } },
      oldPassword ? null : h('label', null, t('oldPassword'), op),
      h('label', null, t('newPassword'), np), h('label', null, t('confirmPassword'), cp), msg,
      h('button', { class: 'btn primary', type: 'submit', id: 'change-submit' }, t('submit'))));
  };
  const user = h('input', { id: 'login-user', autocomplete: 'username' });
  const pass = h('input', { id: 'login-password', type: 'password', autocomplete: 'current-password' });
  const card = h('div', { class: 'login-card' }, h('h1', null, t('welcome')),
    h('form', { onsubmit: async (e) => {
      e.preventDefault();
      try {
        const r = await api.post('/login', { user: user.value, password: pass.value }, { noRedirect: true });
        if (r.mustChangePassword) { oldPassword = pass.value; changeForm(); } else onDone(params.get('redirect') || '/');
      } catch (err) { msg.textContent = `${t('login_failed')}: ${err.message}`; }
    } },
    h('label', null, t('username'), user), h('label', null, t('password'), pass), msg,
    h('button', { class: 'btn primary', type: 'submit', id: 'login-submit' }, t('login'))));
  root.append(h('div', { class: 'login-page' }, card));
  if (params.get('change') === '1') changeForm();
}

export async function showDashboards(root, user) {
  clear(root);
  const q = h('input', { class: 'search', id: 'dash-search', placeholder: t('search') });
  const list = h('div', { class: 'dash-list' });
  const draw = async () => {
    const items = await api.get(`/api/search?type=dash-db&query=${encodeURIComponent(q.value)}`);
    clear(list);
    const byFolder = new Map();
    for (const d of items) {
      const f = d.folderTitle || t('general');
      if (!byFolder.has(f)) byFolder.set(f, []);
      byFolder.get(f).push(d);
    }
    for (const [folder, ds] of byFolder) {
      list.append(h('h3', { class: 'folder' }, `📁 ${folder}`),
        h('ul', null, ds.map((d) => h('li', null, h('a', { href: d.url, class: 'dash-link', 'data-uid': d.uid }, d.title),
          (d.tags || []).map((tg) => h('span', { class: 'tag' }, tg))))));
    }
    if (!items.length) list.append(h('p', { class: 'muted' }, t('none')));
  };
  q.addEventListener('input', draw);
  const canEdit = user && (user.role === 'Admin' || user.role === 'Editor');
  root.append(h('div', { class: 'page' }, h('div', { class: 'page-head' }, h('h1', null, t('dashboards')),
    canEdit ? h('div', null, h('a', { class: 'btn', href: '/dashboard/new', id: 'new-dashboard' }, t('newDash')), ' ', h('a', { class: 'btn', href: '/dashboard/import' }, t('importDash'))) : null),
  q, list));
  await draw();
}

export function showImport(root, navigate) {
  clear(root);
  const ta = h('textarea', { class: 'code', rows: 18, id: 'import-json', placeholder: t('panelJsonHint') });
  const file = h('input', { type: 'file', accept: '.json,application/json', onchange: async (e) => { const f = e.target.files[0]; if (f) ta.value = await f.text(); } });
  const msg = h('div', { class: 'form-error' });
  root.append(h('div', { class: 'page' }, h('h1', null, t('importDash')), ta, h('div', null, t('selectFile'), ' ', file), msg,
    h('button', { class: 'btn primary', id: 'import-submit', onclick: async () => {
      try {
        let d = JSON.parse(ta.value);
        if (d.dashboard && !d.panels) d = d.dashboard;
        delete d.id;
        const r = await api.post('/api/dashboards/import', { dashboard: d, overwrite: true });
        navigate(r.importedUrl);
      } catch (e) { msg.textContent = e.message; }
    } }, t('importDash'))));
}

function stateBadge(s) {
  const cls = s === 'firing' ? 'badge red' : s === 'pending' ? 'badge yellow' : 'badge green';
  return h('span', { class: cls }, t(s === 'firing' ? 'firing' : s === 'pending' ? 'pending' : 'inactive'));
}

export async function showAlerts(root) {
  clear(root);
  const page = h('div', { class: 'page' }, h('h1', null, t('alerting')));
  root.append(page);
  try {
    const [rules, alerts] = await Promise.all([api.get('/api/v1/rules'), api.get('/api/v1/alerts')]);
    const active = (alerts.data && alerts.data.alerts) || [];
    page.append(h('h2', null, `${t('activeAlerts')} (${active.length})`));
    page.append(h('table', { class: 'data-table', id: 'active-alerts' }, h('tr', null, h('th', null, t('state')), h('th', null, t('name')), h('th', null, t('labels')), h('th', null, t('value')), h('th', null, 'Since')),
      active.map((a) => h('tr', { class: `alert-${a.state}` }, h('td', null, stateBadge(a.state)), h('td', null, a.labels.alertname || ''),
        h('td', null, Object.entries(a.labels).map(([k, v]) => h('span', { class: 'tag' }, `${k}=${v}`))), h('td', null, a.value ?? ''), h('td', null, a.activeAt ? fmtDate(Date.parse(a.activeAt)) : '')))));
    page.append(h('h2', null, t('rules')));
    for (const g of (rules.data && rules.data.groups) || []) {
      page.append(h('h3', null, `${g.name}`, h('span', { class: 'muted' }, ` — ${g.file || ''}`)));
      for (const r of g.rules || []) {
        if (r.type !== 'alerting') continue;
        const sel = Object.entries(r.labels || {}).map(([k, v]) => `${k}=${v}`);
        page.append(h('div', { class: `rule rule-${r.state}` },
          h('div', { class: 'rule-head' }, stateBadge(r.state), h('b', null, ` ${r.name} `), r.labels && r.labels.severity ? h('span', { class: 'tag' }, r.labels.severity) : null,
            r.duration ? h('span', { class: 'muted' }, ` for ${r.duration}s`) : null),
          h('pre', { class: 'code' }, r.query),
          r.annotations && r.annotations.summary ? h('div', null, r.annotations.summary) : null,
          (r.alerts || []).length ? h('div', { class: 'muted' }, `${t('silenceHint')}: `, h('code', null, `amtool silence add alertname="${r.name}" ${sel.filter((s) => !s.startsWith('severity=')).join(' ')} --duration=1h --comment="..."`)) : null));
      }
    }
    if (!((rules.data && rules.data.groups) || []).length) page.append(h('p', { class: 'muted' }, t('none')));
  } catch (e) {
    page.append(h('div', { class: 'panel-error' }, e.message));
  }
}

export async function showTargets(root) {
  clear(root);
  const page = h('div', { class: 'page' }, h('h1', null, t('targets')));
  root.append(page);
  try {
    const r = await api.get('/api/v1/targets');
    const byJob = new Map();
    for (const tg of (r.data && r.data.activeTargets) || []) {
      const j = tg.scrapePool || tg.labels.job || '';
      if (!byJob.has(j)) byJob.set(j, []);
      byJob.get(j).push(tg);
    }
    for (const [job, ts] of byJob) {
      const up = ts.filter((x) => x.health === 'up').length;
      page.append(h('h2', null, `${job} (${up}/${ts.length} up)`),
        h('table', { class: 'data-table targets' }, h('tr', null, h('th', null, t('endpoint')), h('th', null, t('state')), h('th', null, t('labels')), h('th', null, t('lastScrape')), h('th', null, t('duration')), h('th', null, t('error'))),
          ts.map((x) => h('tr', { class: `target-${x.health}` }, h('td', null, x.scrapeUrl), h('td', null, h('span', { class: x.health === 'up' ? 'badge green' : 'badge red' }, x.health === 'up' ? t('up') : x.health === 'down' ? t('down') : x.health)),
            h('td', null, Object.entries(x.labels || {}).map(([k, v]) => h('span', { class: 'tag' }, `${k}=${v}`))),
            h('td', null, x.lastScrape && !x.lastScrape.startsWith('0001') ? fmtDate(Date.parse(x.lastScrape)) : '-'),
            h('td', null, x.lastScrapeDuration !== undefined ? `${(x.lastScrapeDuration * 1000).toFixed(1)} ms` : '-'),
            h('td', { class: 'err-text' }, x.lastError || '')))));
    }
    if (!byJob.size) page.append(h('p', { class: 'muted' }, t('none')));
  } catch (e) {
    page.append(h('div', { class: 'panel-error' }, e.message));
  }
}

export async function showStatus(root) {
  clear(root);
  const page = h('div', { class: 'page' }, h('h1', null, t('status')));
  root.append(page);
  const kv = (obj) => h('table', { class: 'data-table kv' }, Object.entries(obj || {}).map(([k, v]) => h('tr', null, h('th', null, k), h('td', null, typeof v === 'object' ? JSON.stringify(v) : String(v)))));
  const section = async (title, fn) => {
    const el = h('section', null, h('h2', null, title));
    page.append(el);
    try { el.append(await fn()); } catch (e) { el.append(h('div', { class: 'panel-error' }, e.message)); }
  };
  await section(t('provisioning'), async () => {
    const s = await api.get('/api/lookout/status');
    return h('div', { id: 'provisioning-errors' }, h('p', null, `${t('version')}: ${s.version} · ${t('dashboards')}: ${s.dashboards}`),
      s.errors.length ? h('table', { class: 'data-table' }, s.errors.map((e) => h('tr', null, h('td', null, e.file), h('td', { class: 'err-text' }, e.reason)))) : h('p', { class: 'muted' }, t('none')));
  });
  await section(t('version'), async () => kv((await api.get('/api/v1/status/buildinfo')).data));
  await section('Runtime', async () => kv((await api.get('/api/v1/status/runtimeinfo')).data));
  await section(t('storage'), async () => {
    const d = (await api.get('/api/v1/status/tsdb')).data || {};
    return h('div', null, kv(d.headStats), d.seriesCountByMetricName ? h('table', { class: 'data-table' }, h('tr', null, h('th', null, t('metrics')), h('th', null, 'series')), d.seriesCountByMetricName.map((x) => h('tr', null, h('td', null, x.name), h('td', { class: 'num' }, x.value)))) : null);
  });
  await section('Flags', async () => kv((await api.get('/api/v1/status/flags')).data));
  await section(t('config'), async () => h('pre', { class: 'code config' }, (await api.get('/api/v1/status/config')).data.yaml));
}

export async function showTokens(root) {
  clear(root);
  const name = h('input', { id: 'token-name', placeholder: t('name') });
  const role = h('select', { class: 'select', id: 'token-role' }, ['Viewer', 'Editor', 'Admin'].map((r) => h('option', { value: r }, r)));
  const created = h('div', { id: 'token-created' });
  const list = h('table', { class: 'data-table' });
  const draw = async () => {
    const keys = await api.get('/api/auth/keys');
    clear(list).append(h('tr', null, h('th', null, t('name')), h('th', null, t('role')), h('th', null, 'Created'), h('th', null, '')),
      keys.map((k) => h('tr', null, h('td', null, k.name), h('td', null, k.role), h('td', null, k.created),
        h('td', null, h('button', { class: 'link', onclick: async () => { await api.del(`/api/auth/keys/${k.id}`); draw(); } }, t('remove'))))));
  };
  root.append(h('div', { class: 'page' }, h('h1', null, t('tokens')),
    h('div', { class: 'inline-form' }, name, role, h('button', { class: 'btn primary', id: 'token-create', onclick: async () => {
      try {
        const r = await api.post('/api/auth/keys', { name: name.value, role: role.value });
        clear(created).append(h('p', null, t('tokenOnce')), h('pre', { class: 'code token' }, r.key));
        name.value = '';
        draw();
      } catch (e) { clear(created).append(h('div', { class: 'form-error' }, e.message)); }
    } }, t('create'))), created, list));
  await draw();
}
