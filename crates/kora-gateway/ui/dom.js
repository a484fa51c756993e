// Small helpers every page uses: building elements from text (never innerHTML with data, so
// nothing a workflow or a node returns can run as script), state badges, times and errors.

import { ApiError } from './api.js';
import { stateGlyph, stateLabel } from './graph.js';

/// Builds an element: h('tag.class#id', {attr: value, onclick: f}, ...children).
export function h(spec, attrs, ...children) {
  const [, tag, rest] = spec.match(/^([a-z0-9]+)(.*)$/);
  const e = document.createElement(tag);
  for (const part of rest.match(/[.#][^.#]+/g) || []) {
    if (part[0] === '.') e.classList.add(part.slice(1));
    else e.id = part.slice(1);
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v === true) e.setAttribute(k, '');
    else e.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    e.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
  return e;
}

export const RUN_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled', 'rejected'];
export const RUN_GLYPHS = { queued: '…', running: '▶', succeeded: '✓', failed: '✗', cancelled: '⊘', rejected: '⊘' };

export function badge(status, glyphs) {
  const glyph = (glyphs && glyphs[status]) || stateGlyph(status);
  return h(`span.badge.st-${status}`, {}, h('span', { 'aria-hidden': 'true' }, glyph), ' ', stateLabel(status));
}

export function when(ms) {
  if (!ms) return '—';
  const d = new Date(ms);
  const p = (x) => String(x).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export function duration(ms) {
  if (ms === undefined || ms === null) return '—';
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  const m = Math.floor(ms / 60000);
  if (m < 60) return `${m} min ${Math.round((ms % 60000) / 1000)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function errorBox(e) {
  const text = e instanceof ApiError ? `${e.message} (${e.status} ${e.code})` : String(e);
  return h('p.error', { role: 'alert' }, text);
}


export function pre(value) {
  return h('pre.json', {}, JSON.stringify(value, null, 2));
}

/// An attempt's error with its type, unless the message already starts with it.
export function errorText(type, message) {
  if (!message) return type || '';
  return type && !message.startsWith(type) ? `${type}: ${message}` : message;
}

/// Replaces `el`'s children, leaving out null, undefined and false (replaceChildren would
/// write them as text).
export function fill(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
}
