// The runs list: filters (status, stuck, workflow, start time), opening a run by its id or
// idempotency key, live refresh, paging, and cancelling every listed live run (the count
// first).

import { ApiError, enc, get, post } from './api.js';
import { badge, duration, errorBox, fill, h, RUN_GLYPHS, RUN_STATUSES, when } from './dom.js';

const LIVE = ['queued', 'running', 'stuck'];

export function runsList(main, me, query) {
  const can = (scope) => me.scopes.includes(scope);
  const filters = {
    status: query.get('status') || '',
    workflow: query.get('workflow') || '',
    since: query.get('since') || '',
    until: query.get('until') || '',
  };
  // A custom range is epoch ms in the address, local date and time in the inputs.
  const local = (ms) => {
    if (!/^\d+$/.test(ms)) return '';
    const d = new Date(Number(ms));
    const p = (x) => String(x).padStart(2, '0');
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
  };
  const fromIn = h('input#f-from', { type: 'datetime-local', value: local(filters.since) });
  const toIn = h('input#f-to', { type: 'datetime-local', value: local(filters.until) });
  const stuck = filters.status === 'stuck';
  const statusSel = h('select#f-status', { name: 'status' },
    h('option', { value: '' }, 'any'),
    RUN_STATUSES.map((s) => h('option', { value: s, selected: filters.status === s }, s)),
    h('option', { value: 'stuck', selected: stuck }, 'stuck (running, no progress)'));
  const workflowIn = h('input#f-workflow', { name: 'workflow', value: filters.workflow, placeholder: 'name' });
  const sinceSel = h('select#f-since', { name: 'since' },
    [['', 'any time'], ['1h', 'last hour'], ['24h', 'last 24 hours'], ['7d', 'last 7 days']]
      .map(([v, t]) => h('option', { value: v, selected: filters.since === v }, t)),
    /^\d+$/.test(filters.since) || filters.until ? h('option', { value: 'range', selected: true }, 'between…') : null);
  const searchIn = h('input#f-run', { name: 'run', spellcheck: 'false' });
  const problem = h('div', { 'aria-live': 'polite' });
  const notice = h('div', { 'aria-live': 'polite' });
  const apply = (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    if (statusSel.value) q.set('status', statusSel.value);
    if (workflowIn.value.trim()) q.set('workflow', workflowIn.value.trim());
    // A date in From or To makes a custom range; else the preset.
    if (fromIn.value || toIn.value) {
      if (fromIn.value) q.set('since', String(new Date(fromIn.value).getTime()));
      if (toIn.value) q.set('until', String(new Date(toIn.value).getTime()));
    } else if (sinceSel.value && sinceSel.value !== 'range') {
      q.set('since', sinceSel.value);
    }
    location.hash = '#/runs' + (q.toString() ? '?' + q : '');
  };
  // A run id, else an idempotency key.
  const search = async (ev) => {
    ev.preventDefault();
    const text = searchIn.value.trim();
    if (!text) return;
    notice.replaceChildren();
    try {
      await get(`/v1/runs/${enc(text)}`);
      location.hash = '#/runs/' + enc(text);
      return;
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404)) {
        notice.replaceChildren(errorBox(e));
        return;
      }
    }
    try {
      const { runs } = await get('/v1/runs?idempotency_key=' + enc(text));
      if (runs.length) location.hash = '#/runs/' + enc(runs[0].run_id);
      else notice.replaceChildren(h('p.error', { role: 'alert' }, `No run has the id or idempotency key "${text}".`));
    } catch (e) {
      notice.replaceChildren(errorBox(e));
    }
  };
  const tbody = h('tbody');
  const more = h('button.secondary', { type: 'button', hidden: true }, 'Load more');
  const bulk = h('div.actions');
  const live = h('p.muted', { 'aria-live': 'polite' });
  let cursor = null;
  let pagesLoaded = 0;
  let shown = [];

  const row = (r) => h('tr', { 'data-run': r.run_id },
    h('td', {}, badge(r.status, RUN_GLYPHS)),
    h('td', {}, h('a.mono', { href: '#/runs/' + enc(r.run_id) }, r.run_id)),
    h('td', {}, r.workflow),
    h('td', {}, when(r.created_ms)),
    h('td', {}, r.finished_ms
      ? duration(r.finished_ms - r.created_ms)
      : r.idle_secs !== undefined
        ? `idle ${duration(r.idle_secs * 1000)}${r.reason ? ` (${r.reason})` : ''}`
        : r.status === 'running' ? `${duration(Date.now() - r.created_ms)} so far` : '—'));

  // Cancel every live run listed: the count first, then one request per run.
  const bulkCancel = () => {
    const targets = shown.filter((r) => ['queued', 'running'].includes(r.status)).map((r) => r.run_id);
    if (!targets.length) return;
    if (!confirm(`Cancel the ${targets.length} run${targets.length === 1 ? '' : 's'} listed? Their running nodes are stopped.`)) return;
    (async () => {
      let done = 0;
      const failed = [];
      for (const id of targets) {
        try {
          await post(`/v1/runs/${enc(id)}/cancel`);
          done += 1;
        } catch (e) {
          failed.push(`${id}: ${e.message}`);
        }
      }
      notice.replaceChildren(h(failed.length ? 'p.error' : 'p.ok', { role: 'status' },
        `Cancelled ${done} of ${targets.length}.${failed.length ? ' Not cancelled: ' + failed.join('; ') : ''}`));
      load(false);
    })();
  };
  const showBulk = () => {
    const n = shown.filter((r) => ['queued', 'running'].includes(r.status)).length;
    fill(bulk, can('runs:cancel') && LIVE.includes(filters.status) && n > 0
      ? h('button.danger', { type: 'button', 'data-action': 'cancel-listed', onclick: bulkCancel }, `Cancel the ${n} listed…`)
      : null);
  };

  const path = (c) => {
    const q = new URLSearchParams({ limit: '50' });
    for (const [k, v] of Object.entries(filters)) if (v) q.set(k, v);
    if (c) q.set('cursor', c);
    return '/v1/runs?' + q;
  };
  // Stuck runs come from the overview (the coordinator's stuck rule), the rest from /v1/runs.
  const fetchPage = async (c) => {
    if (!stuck) return get(path(c));
    const o = await get('/v1/overview?window=1h');
    return {
      runs: o.stuck
        .filter((s) => !filters.workflow || s.workflow === filters.workflow)
        .map((s) => ({ run_id: s.run_id, status: 'running', workflow: s.workflow, created_ms: null, idle_secs: s.idle_secs, reason: s.reason })),
    };
  };
  const load = async (append) => {
    try {
      const page = await fetchPage(append ? cursor : null);
      problem.replaceChildren();
      const rows = page.runs.map(row);
      if (append) {
        tbody.append(...rows);
        shown = shown.concat(page.runs);
        pagesLoaded += 1;
      } else {
        tbody.replaceChildren(...rows);
        shown = page.runs;
        pagesLoaded = 1;
      }
      cursor = page.next_cursor || null;
      more.hidden = !cursor;
      if (!tbody.children.length) tbody.replaceChildren(h('tr', {}, h('td.muted', { colspan: 5 }, 'No runs match these filters.')));
      showBulk();
      live.textContent = `Updated ${when(Date.now())}. Refreshes every 5 s.`;
    } catch (e) {
      problem.replaceChildren(errorBox(e));
    }
  };
  more.addEventListener('click', () => load(true));

  main.replaceChildren(h('section', {},
    h('h1', {}, 'Runs'),
    h('form.filters', { onsubmit: apply, 'aria-label': 'Filter runs' },
      h('label', { for: 'f-status' }, 'Status'), statusSel,
      h('label', { for: 'f-workflow' }, 'Workflow'), workflowIn,
      h('label', { for: 'f-since' }, 'Started'), sinceSel,
      h('label', { for: 'f-from' }, 'or from'), fromIn,
      h('label', { for: 'f-to' }, 'to'), toIn,
      h('button', { type: 'submit' }, 'Filter')),
    h('form.search', { onsubmit: search, role: 'search', 'aria-label': 'Open a run' },
      h('label', { for: 'f-run' }, 'Run id or idempotency key'), searchIn, h('button.secondary', { type: 'submit' }, 'Open')),
    problem, notice, bulk,
    h('table.runs', {},
      h('caption.sr-only', {}, 'Runs, newest first'),
      h('thead', {}, h('tr', {}, ['Status', 'Run', 'Workflow', 'Started', stuck ? 'Idle' : 'Duration'].map((t) => h('th', { scope: 'col' }, t)))),
      tbody),
    more, live));
  load(false);
  // Live: the first page is read again while nobody has paged further.
  const timer = setInterval(() => {
    if (pagesLoaded <= 1 && !document.hidden) load(false);
  }, 5000);
  return () => clearInterval(timer);
}
