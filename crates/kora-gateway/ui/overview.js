// The overview (the tenant's KPIs over a window: throughput, success rate, p50/p99, active
// and stuck runs, per workflow) and the fleet (task queues and workers), refreshed every 10 s.

import { enc, get } from './api.js';
import { duration, errorBox, fill, h, when } from './dom.js';

const WINDOWS = [['15m', 'last 15 minutes'], ['1h', 'last hour'], ['24h', 'last 24 hours'], ['7d', 'last 7 days']];

function secs(s) {
  return duration(Math.round(s * 1000));
}

function pct(rate) {
  return rate === undefined || rate === null ? '—' : `${(rate * 100).toFixed(rate === 1 ? 0 : 1)} %`;
}

function windowPicker(id, value, onChange) {
  const sel = h(`select#${id}`, {}, WINDOWS.map(([v, t]) => h('option', { value: v, selected: v === value }, t)));
  sel.addEventListener('change', () => onChange(sel.value));
  return [h('label', { for: id }, 'Window'), sel];
}

function card(label, value, detail, key) {
  return h('div.kpi', { 'data-kpi': key, role: 'listitem' },
    h('div.kpi-label', {}, label),
    h('div.kpi-value', {}, value),
    detail ? h('div.kpi-detail', {}, detail) : null);
}

function live(render) {
  render();
  const timer = setInterval(() => {
    if (!document.hidden) render();
  }, 10000);
  return () => clearInterval(timer);
}

export function overviewPage(main, me, query) {
  let win = query.get('window') || '1h';
  const body = h('div', {}, h('p.muted', {}, 'Loading…'));
  const stamp = h('p.muted', { 'aria-live': 'polite' });
  main.replaceChildren(h('section', {},
    h('h1', {}, 'Overview'),
    h('form.filters', { onsubmit: (ev) => ev.preventDefault() }, windowPicker('o-window', win, (v) => {
      win = v;
      location.hash = '#/overview?window=' + v;
    })),
    body, stamp));
  return live(async () => {
    try {
      const o = await get('/v1/overview?window=' + enc(win));
      const t = o.totals;
      const active = o.live.reduce((a, l) => a + l.running + l.queued, 0);
      const running = o.live.reduce((a, l) => a + l.running, 0);
      fill(body,
        h('div.kpis', { role: 'list', 'aria-label': 'Key figures' },
          card('Throughput', `${t.per_sec.toFixed(t.per_sec < 10 ? 2 : 0)} runs/s`, `${t.finished} finished`, 'throughput'),
          card('Success rate', pct(t.success_rate), `${t.succeeded} succeeded, ${t.failed} failed, ${t.cancelled} cancelled`, 'success'),
          card('p50 latency', t.finished ? secs(t.p50_secs) : '—', 'submission to end', 'p50'),
          card('p99 latency', t.finished ? secs(t.p99_secs) : '—', 'submission to end', 'p99'),
          card('Active runs', String(active), `${running} running, ${active - running} queued`, 'active'),
          card('Stuck runs', String(o.stuck.length), o.stuck.length ? 'see below' : 'none', 'stuck')),
        o.truncated ? h('p.error', {}, 'More runs finished in this window than are read; the figures cover the most recent 200,000.') : null,
        h('h2', {}, 'Per workflow'),
        h('table.workflows', {},
          h('thead', {}, h('tr', {}, ['Workflow', 'Finished', 'Succeeded', 'Failed', 'Cancelled', 'Runs/s', 'Success', 'p50', 'p99'].map((x) => h('th', { scope: 'col' }, x)))),
          h('tbody', {}, o.workflows.length
            ? o.workflows.map((w) => h('tr', { 'data-workflow': w.workflow },
              h('td', {}, h('a', { href: '#/runs?workflow=' + enc(w.workflow) }, w.workflow)),
              h('td', {}, w.kpis.finished), h('td', {}, w.kpis.succeeded), h('td', {}, w.kpis.failed), h('td', {}, w.kpis.cancelled),
              h('td', {}, w.kpis.per_sec.toFixed(3)), h('td', {}, pct(w.kpis.success_rate)),
              h('td', {}, secs(w.kpis.p50_secs)), h('td', {}, secs(w.kpis.p99_secs))))
            : h('tr', {}, h('td.muted', { colspan: 9 }, 'No run finished in this window.')))),
        h('h2', {}, 'Live now'),
        h('table.live', {},
          h('thead', {}, h('tr', {}, ['Workflow', 'Running', 'Queued'].map((x) => h('th', { scope: 'col' }, x)))),
          h('tbody', {}, o.live.length
            ? o.live.map((l) => h('tr', {}, h('td', {}, h('a', { href: `#/runs?workflow=${enc(l.workflow)}&status=running` }, l.workflow)), h('td', {}, l.running), h('td', {}, l.queued)))
            : h('tr', {}, h('td.muted', { colspan: 3 }, 'Nothing running.')))),
        h('h2#stuck', {}, 'Stuck runs'),
        h('table.stuck', {},
          h('thead', {}, h('tr', {}, ['Run', 'Workflow', 'Idle', 'Reason'].map((x) => h('th', { scope: 'col' }, x)))),
          h('tbody', {}, o.stuck.length
            ? o.stuck.map((s) => h('tr', { 'data-run': s.run_id },
              h('td', {}, h('a.mono', { href: '#/runs/' + enc(s.run_id) }, s.run_id)), h('td', {}, s.workflow),
              h('td', {}, duration(s.idle_secs * 1000)), h('td', {}, s.reason || '—')))
            : h('tr', {}, h('td.muted', { colspan: 4 }, 'No stuck run.')))));
      stamp.textContent = `Updated ${when(o.at_ms)}. Refreshes every 10 s.`;
    } catch (e) {
      body.replaceChildren(errorBox(e));
    }
  });
}

export function fleetPage(main, me, query) {
  let win = query.get('window') || '1h';
  const body = h('div', {}, h('p.muted', {}, 'Loading…'));
  const stamp = h('p.muted', { 'aria-live': 'polite' });
  main.replaceChildren(h('section', {},
    h('h1', {}, 'Queues and workers'),
    h('p.help', {}, 'The whole installation\'s task queues and workers (shared by every tenant). Workers report their busy slots every 5 s.'),
    h('form.filters', { onsubmit: (ev) => ev.preventDefault() }, windowPicker('f-window', win, (v) => {
      win = v;
      location.hash = '#/fleet?window=' + v;
    })),
    body, stamp));
  return live(async () => {
    try {
      const f = await get('/v1/fleet?window=' + enc(win));
      fill(body,
        h('h2', {}, 'Task queues'),
        h('table.queues', {},
          h('thead', {}, h('tr', {}, ['Queue', 'Waiting', 'Running', 'Oldest waiting', 'Served'].map((x) => h('th', { scope: 'col' }, x)))),
          h('tbody', {}, f.queues.length
            ? f.queues.map((q) => h('tr', { 'data-queue': q.queue },
              h('td.mono', {}, q.queue), h('td', {}, q.waiting), h('td', {}, q.running),
              h('td', {}, q.waiting ? secs(q.oldest_waiting_secs) : '—'),
              h('td', {}, q.served ? h('span.badge.st-succeeded', {}, '✓ yes') : h('span.badge.st-failed', {}, '✗ no worker'))))
            : h('tr', {}, h('td.muted', { colspan: 5 }, 'No task waits in any queue.')))),
        h('h2', {}, 'Workers'),
        h('table.workers', {},
          h('thead', {}, h('tr', {}, ['Worker', 'State', 'Queue', 'Busy slots', 'Attempts finished in the window', 'Last status'].map((x) => h('th', { scope: 'col' }, x)))),
          h('tbody', {}, f.workers.length
            ? f.workers.map((w) => h('tr', { 'data-worker': w.worker_id, 'data-alive': String(w.alive) },
              h('td.mono', {}, w.worker_id),
              h('td', {}, w.alive ? h('span.badge.st-succeeded', {}, '▶ running') : h('span.badge.st-not_run', {}, '∅ gone')),
              h('td.mono', {}, w.queue || '—'),
              h('td.busy', {}, w.alive ? [
                h('meter', { min: 0, max: w.slots, value: w.busy, 'aria-label': `${w.busy} of ${w.slots} slots busy` }),
                ` ${w.busy} of ${w.slots}`,
              ] : '—'),
              h('td', {}, w.attempts),
              h('td', {}, w.alive ? `${w.seen_secs.toFixed(0)} s ago` : '—')))
            : h('tr', {}, h('td.muted', { colspan: 6 }, 'No worker is running or finished an attempt in this window.')))));
      stamp.textContent = `Updated ${when(f.at_ms)}. Refreshes every 10 s.`;
    } catch (e) {
      body.replaceChildren(errorBox(e));
    }
  });
}
