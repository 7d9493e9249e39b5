// A small Markdown subset for text panels (headings, paragraphs, lists, emphasis, code,
// links), built as DOM nodes so no markup from the dashboard is ever interpreted.

import { h } from './util.js';

function inline(text) {
  const out = [];
  const re = /(`[^`]+`)|(\*\*[^*]+\*\*)|(\*[^*]+\*|_[^_]+_)|(\[([^\]]+)\]\(([^)\s]+)\))/g;
  let last = 0, m;
  while ((m = re.exec(text)) !== null) {
    if (m.index > last) out.push(text.slice(last, m.index));
    if (m[1]) out.push(h('code', null, m[1].slice(1, -1)));
    else if (m[2]) out.push(h('strong', null, m[2].slice(2, -2)));
    else if (m[3]) out.push(h('em', null, m[3].slice(1, -1)));
    else if (m[4]) out.push(h('a', { href: m[6], target: '_blank', rel: 'noopener noreferrer' }, m[5]));
    last = re.lastIndex;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

export function markdown(src) {
  const root = h('div', { class: 'md' });
  const lines = String(src).replace(/\r\n/g, '\n').split('\n');
  let list = null, para = [], code = null;
  const flush = () => {
    if (para.length) { root.append(h('p', null, inline(para.join(' ')))); para = []; }
    if (list) { root.append(list); list = null; }
  };
  for (const line of lines) {
    if (code !== null) {
      if (line.startsWith('```')) { root.append(h('pre', null, h('code', null, code.join('\n')))); code = null; } else code.push(line);
      continue;
    }
    if (line.startsWith('```')) { flush(); code = []; continue; }
    const hd = /^(#{1,6})\s+(.*)$/.exec(line);
    if (hd) { flush(); root.append(h(`h${hd[1].length}`, null, inline(hd[2]))); continue; }
    const li = /^\s*(?:[-*+]|\d+\.)\s+(.*)$/.exec(line);
    if (li) {
      if (para.length) { root.append(h('p', null, inline(para.join(' ')))); para = []; }
      if (!list) list = h(/^\s*\d+\./.test(line) ? 'ol' : 'ul');
      list.append(h('li', null, inline(li[1])));
      continue;
    }
    if (!line.trim()) { flush(); continue; }
    if (list) { root.append(list); list = null; }
    para.push(line.trim());
  }
  if (code !== null) root.append(h('pre', null, h('code', null, code.join('\n'))));
  flush();
  return root;
}
