// A run's attempt timeline (a waterfall: one bar per attempt, from dispatch to end) and its
// events, read a page at a time from the gateway's event stream.

import { credential, enc } from './api.js';
import { duration, errorBox, h, when } from './dom.js';

const SVG = 'http://www.w3.org/2000/svg';
const MAX_BARS = 400;
const ROW = 20;
const LABEL_W = 220;
const BAR_W = 760;

function el(name, attrs, parent) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  parent?.appendChild(e);
  return e;
}

/// The waterfall of `attempts` (a run's, from GET /v1/runs/{id}), oldest dispatch first.
export function timeline(attempts, run) {
  const sorted = [...attempts].sort((a, b) => a.dispatched_ms - b.dispatched_ms
    || a.node_id.localeCompare(b.node_id) || a.iteration - b.iteration || a.attempt - b.attempt);
  if (!sorted.length) return h('p.muted', {}, 'No attempt yet.');
  const shown = sorted.slice(0, MAX_BARS);
  const now = Date.now();
  const start = Math.min(run.created_ms, shown[0].dispatched_ms);
  const end = Math.max(...shown.map((a) => a.finished_ms || now), start + 1);
  const scale = BAR_W / (end - start);
  const height = shown.length * ROW + 28;
  const svg = el('svg', {
    class: 'timeline', width: LABEL_W + BAR_W + 90, height,
    viewBox: `0 0 ${LABEL_W + BAR_W + 90} ${height}`, role: 'img',
    'aria-label': `timeline of ${shown.length} attempts over ${duration(end - start)}`,
  });
  // A scale every quarter of the span.
  for (let q = 0; q <= 4; q++) {
    const x = LABEL_W + (BAR_W * q) / 4;
    el('line', { x1: x, y1: 0, x2: x, y2: height - 18, class: 'tick' }, svg);
    el('text', { x, y: height - 4, class: 'tick-label', 'text-anchor': 'middle' }, svg).textContent = `+${duration(Math.round(((end - start) * q) / 4))}`;
  }
  shown.forEach((a, i) => {
    const y = i * ROW + 2;
    const state = a.dead_letter === 'open' ? 'dead_lettered' : a.status === 'dispatched' ? 'running' : a.status;
    const label = `${a.node_id}${a.iteration ? ` #${a.iteration}` : ''}${a.attempt > 1 ? ` (attempt ${a.attempt})` : ''}`;
    el('text', { x: 4, y: y + 13, class: 'bar-label' }, svg).textContent = label.length > 30 ? label.slice(0, 29) + '…' : label;
    const x = LABEL_W + (a.dispatched_ms - start) * scale;
    const took = (a.finished_ms || now) - a.dispatched_ms;
    const bar = el('rect', { x, y: y + 2, width: Math.max(2, took * scale), height: ROW - 6, rx: 2, class: `bar st-${state}`, 'data-attempt': `${a.node_id}:${a.iteration}:${a.attempt}` }, svg);
    el('title', {}, bar).textContent = `${label}: ${a.status}, dispatched ${when(a.dispatched_ms)}, ${a.finished_ms ? 'took ' + duration(took) : 'running for ' + duration(took)}${a.worker_id ? ' on ' + a.worker_id : ''}`;
    el('text', { x: Math.min(x + Math.max(2, took * scale) + 4, LABEL_W + BAR_W + 4), y: y + 13, class: 'bar-label' }, svg).textContent = duration(took);
  });
  return h('div', {},
    sorted.length > MAX_BARS ? h('p.muted', {}, `The first ${MAX_BARS} of ${sorted.length} attempts.`) : null,
    h('div.timeline-box', {}, svg));
}

/// Reads events after `after` from the SSE stream: up to `max`, until the stream ends or goes
/// quiet for `quietMs` (a live run's stream stays open).
async function readEvents(runId, after, max, quietMs) {
  const ctrl = new AbortController();
  const res = await fetch(`/v1/runs/${enc(runId)}/events?after=${after}`, {
    headers: { Authorization: 'Bearer ' + credential(), Accept: 'text/event-stream' },
    signal: ctrl.signal,
  });
  if (!res.ok) {
    let message = res.statusText;
    try { message = (await res.json()).error.message; } catch { /* not JSON */ }
    throw new Error(`${message} (${res.status})`);
  }
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  const events = [];
  let buffer = '';
  let ended = false;
  try {
    while (events.length < max) {
      let timer;
      const quiet = new Promise((resolve) => { timer = setTimeout(() => resolve({ quiet: true }), quietMs); });
      const next = await Promise.race([reader.read(), quiet]);
      clearTimeout(timer);
      if (next.quiet) break;
      if (next.done) { ended = true; break; }
      buffer += decoder.decode(next.value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf('\n\n')) >= 0 && events.length < max) {
        const frame = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = frame.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n');
        if (data) events.push(JSON.parse(data));
      }
    }
  } finally {
    ctrl.abort();
  }
  return { events, ended };
}

/// The run's events, 100 at a time.
export function eventsSection(runId) {
  const tbody = h('tbody');
  const status = h('p.muted', { 'aria-live': 'polite' });
  const more = h('button.secondary', { type: 'button' }, 'Load events');
  let after = 0;
  const load = async () => {
    more.disabled = true;
    try {
      const { events, ended } = await readEvents(runId, after, 100, 1500);
      for (const e of events) {
        after = Math.max(after, e.seq);
        tbody.append(h('tr', { 'data-seq': e.seq },
          h('td', {}, e.seq), h('td', {}, when(e.at_ms)), h('td', {}, e.kind.replace(/_/g, ' ')),
          h('td', {}, e.node_id ? `${e.node_id}${e.iteration ? ' #' + e.iteration : ''}${e.attempt > 1 ? ' attempt ' + e.attempt : ''}` : '—'),
          h('td.mono.small', {}, e.detail === undefined || e.detail === null ? '' : JSON.stringify(e.detail).slice(0, 200))));
      }
      status.textContent = ended ? `Up to event ${after}: that is all of them.` : `Up to event ${after} so far.`;
      more.textContent = 'Load more events';
      more.disabled = ended;
    } catch (e) {
      status.replaceChildren(errorBox(e));
      more.disabled = false;
    }
  };
  more.addEventListener('click', load);
  return h('section.events', {},
    h('h2', {}, 'Events'),
    h('table.events', {},
      h('thead', {}, h('tr', {}, ['#', 'At', 'Kind', 'Node', 'Detail'].map((t) => h('th', { scope: 'col' }, t)))),
      tbody),
    more, status);
}
