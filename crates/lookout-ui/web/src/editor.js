// The panel editor: title, type, unit, queries with legend formats, legend mode.

import { h, clear } from './util.js';
import { t } from './i18n.js';

const TYPES = ['timeseries', 'stat', 'gauge', 'bargauge', 'table', 'logs', 'text'];
const UNITS = ['short', 'none', 'bytes', 's', 'ms', 'percent', 'percentunit', 'reqps', 'ops', 'Bps'];

export function openPanelEditor(panel, onDone) {
  const draft = JSON.parse(JSON.stringify(panel));
  draft.fieldConfig = draft.fieldConfig || { defaults: {}, overrides: [] };
  draft.fieldConfig.defaults = draft.fieldConfig.defaults || {};
  draft.options = draft.options || {};
  draft.targets = draft.targets && draft.targets.length ? draft.targets : [{ refId: 'A', expr: '' }];
  const queries = h('div', { class: 'queries' });
  const drawQueries = () => {
    clear(queries);
    draft.targets.forEach((tg, i) => {
      queries.append(h('div', { class: 'query-row' },
        h('span', { class: 'muted' }, tg.refId || String.fromCharCode(65 + i)),
        h('textarea', { class: 'code', rows: 2, 'data-query': i, oninput: (e) => { tg.expr = e.target.value; } }, tg.expr || ''),
        h('input', { placeholder: `${t('legend')} {{label}}`, value: tg.legendFormat || '', 'data-legend': i, oninput: (e) => { tg.legendFormat = e.target.value; } }),
        h('button', { class: 'link', onclick: () => { draft.targets.splice(i, 1); drawQueries(); } }, '✕')));
    });
  };
  drawQueries();
  const close = () => overlay.remove();
  const overlay = h('div', { class: 'modal-bg' }, h('div', { class: 'modal', id: 'panel-editor' },
    h('h2', null, t('edit')),
    h('label', null, t('title'), h('input', { id: 'pe-title', value: draft.title || '', oninput: (e) => { draft.title = e.target.value; } })),
    h('label', null, t('type'), h('select', { id: 'pe-type', onchange: (e) => { draft.type = e.target.value; } }, TYPES.map((x) => h('option', { value: x, selected: x === draft.type }, x)))),
    h('label', null, t('unit'), h('select', { id: 'pe-unit', onchange: (e) => { draft.fieldConfig.defaults.unit = e.target.value; } }, UNITS.map((x) => h('option', { value: x, selected: x === (draft.fieldConfig.defaults.unit || 'short') }, x)))),
    h('label', null, t('legend'), h('select', { id: 'pe-legend', onchange: (e) => { draft.options.legend = { ...(draft.options.legend || {}), displayMode: e.target.value, showLegend: e.target.value !== 'hidden', calcs: e.target.value === 'table' ? ['min', 'max', 'mean', 'lastNotNull'] : [] }; } },
      ['list', 'table', 'hidden'].map((x) => h('option', { value: x, selected: x === ((draft.options.legend || {}).displayMode || 'list') }, x)))),
    draft.type === 'text' ? h('label', null, 'Markdown', h('textarea', { rows: 5, oninput: (e) => { draft.options.content = e.target.value; } }, draft.options.content || '')) : null,
    h('div', { class: 'muted' }, t('query')), queries,
    h('button', { class: 'btn', onclick: () => { draft.targets.push({ refId: String.fromCharCode(65 + draft.targets.length), expr: '' }); drawQueries(); } }, t('addQuery')),
    h('div', { class: 'modal-actions' },
      h('button', { class: 'btn', onclick: close }, t('cancel')),
      h('button', { class: 'btn primary', id: 'pe-apply', onclick: () => {
        draft.targets.forEach((tg, i) => { tg.refId = tg.refId || String.fromCharCode(65 + i); });
        for (const k of Object.keys(panel)) delete panel[k];
        Object.assign(panel, draft);
        close();
        onDone();
      } }, t('apply')))));
  document.body.append(overlay);
}
