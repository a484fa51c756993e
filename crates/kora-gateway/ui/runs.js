// The runs list and a run's page (its graph, node panel and actions).

import { enc, get, post } from './api.js';
import { badge, duration, errorBox, errorText, h, pre, RUN_GLYPHS, RUN_STATUSES, when } from './dom.js';
import { render as renderGraph, stateLabel, STATES } from './graph.js';

export function runsList(main, me, query) {
  const filters = {
    status: query.get('status') || '',
    workflow: query.get('workflow') || '',
    since: query.get('since') || '',
  };
  const statusSel = h('select#f-status', { name: 'status' },
    h('option', { value: '' }, 'any'),
    RUN_STATUSES.map((s) => h('option', { value: s, selected: filters.status === s }, s)));
  const workflowIn = h('input#f-workflow', { name: 'workflow', value: filters.workflow, placeholder: 'name' });
  const sinceSel = h('select#f-since', { name: 'since' },
    [['', 'any time'], ['1h', 'last hour'], ['24h', 'last 24 hours'], ['7d', 'last 7 days']]
      .map(([v, t]) => h('option', { value: v, selected: filters.since === v }, t)));
  const searchIn = h('input#f-run', { name: 'run', placeholder: 'run id', spellcheck: 'false' });
  const apply = (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    if (statusSel.value) q.set('status', statusSel.value);
    if (workflowIn.value.trim()) q.set('workflow', workflowIn.value.trim());
    if (sinceSel.value) q.set('since', sinceSel.value);
    location.hash = '#/runs' + (q.toString() ? '?' + q : '');
  };
  const search = (ev) => {
    ev.preventDefault();
    const id = searchIn.value.trim();
    if (id) location.hash = '#/runs/' + enc(id);
  };
  const tbody = h('tbody');
  const more = h('button.secondary', { type: 'button', hidden: true }, 'Load more');
  const live = h('p.muted', { 'aria-live': 'polite' });
  const problem = h('div');
  let cursor = null;
  let pagesLoaded = 0;

  const row = (r) => h('tr', { 'data-run': r.run_id },
    h('td', {}, badge(r.status, RUN_GLYPHS)),
    h('td', {}, h('a.mono', { href: '#/runs/' + enc(r.run_id) }, r.run_id)),
    h('td', {}, r.workflow),
    h('td', {}, when(r.created_ms)),
    h('td', {}, r.finished_ms ? duration(r.finished_ms - r.created_ms) : (r.status === 'running' ? `${duration(Date.now() - r.created_ms)} so far` : '—')));

  const path = (c) => {
    const q = new URLSearchParams({ limit: '50' });
    for (const [k, v] of Object.entries(filters)) if (v) q.set(k, v);
    if (c) q.set('cursor', c);
    return '/v1/runs?' + q;
  };
  const load = async (append) => {
    try {
      const page = await get(path(append ? cursor : null));
      problem.replaceChildren();
      const rows = page.runs.map(row);
      if (append) tbody.append(...rows);
      else tbody.replaceChildren(...rows);
      if (!append) pagesLoaded = 1;
      else pagesLoaded += 1;
      cursor = page.next_cursor || null;
      more.hidden = !cursor;
      if (!tbody.children.length) tbody.replaceChildren(h('tr', {}, h('td.muted', { colspan: 5 }, 'No runs match these filters.')));
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
      h('button', { type: 'submit' }, 'Filter')),
    h('form.search', { onsubmit: search, role: 'search', 'aria-label': 'Open a run' },
      h('label', { for: 'f-run' }, 'Run id'), searchIn, h('button.secondary', { type: 'submit' }, 'Open')),
    problem,
    h('table.runs', {},
      h('caption.sr-only', {}, 'Runs, newest first'),
      h('thead', {}, h('tr', {}, ['Status', 'Run', 'Workflow', 'Started', 'Duration'].map((t) => h('th', { scope: 'col' }, t)))),
      tbody),
    more, live));
  load(false);
  // Live: the first page is read again while nobody has paged further.
  const timer = setInterval(() => {
    if (pagesLoaded <= 1 && !document.hidden) load(false);
  }, 5000);
  return () => clearInterval(timer);
}

// ---------------------------------------------------------------- one run

const BIG_GRAPH = 300;

function parentRun(parent) {
  // A parent attempt is `<run>:<node>:<iteration>:<attempt>`.
  const parts = parent.split(':');
  return parts.length > 3 ? parts.slice(0, -3).join(':') : parent;
}


async function nodePanel(panel, runId, nodeId) {
  panel.hidden = false;
  panel.replaceChildren(h('p.muted', {}, `Loading ${nodeId}…`));
  try {
    const n = await get(`/v1/runs/${enc(runId)}/nodes/${enc(nodeId)}`);
    panel.replaceChildren(
      h('div.panel-head', {},
        h('h2#node-title', {}, n.node_id),
        h('button.link', { type: 'button', 'aria-label': 'Close node details', onclick: () => { panel.hidden = true; } }, 'Close')),
      h('p', {}, badge(n.state), ' ', h('span.muted', {}, n.type)),
      h('h3', {}, `Attempts (${n.attempts.length})`),
      n.attempts.length
        ? h('table.attempts', {},
          h('thead', {}, h('tr', {}, ['Iteration', 'Attempt', 'Status', 'Worker', 'Dispatched', 'Took', 'Error'].map((t) => h('th', { scope: 'col' }, t)))),
          h('tbody', {}, n.attempts.map((a) => h('tr', {},
            h('td', {}, a.iteration), h('td', {}, a.attempt),
            h('td', {}, a.status + (a.dead_letter ? ` (dead letter: ${a.dead_letter})` : '')),
            h('td.mono', {}, a.worker_id || '—'),
            h('td', {}, when(a.dispatched_ms)),
            h('td', {}, a.finished_ms ? duration(a.finished_ms - a.dispatched_ms) : '—'),
            h('td', {}, errorText(a.error_type, a.error))))))
        : h('p.muted', {}, 'Not started.'),
      h('h3', {}, 'Result'), pre(n.result),
      h('h3', {}, 'Configuration'), pre(n.config));
    panel.querySelector('#node-title').focus?.();
  } catch (e) {
    panel.replaceChildren(errorBox(e));
  }
}

function stateSummary(nodes) {
  const counts = {};
  for (const n of nodes) counts[n.state] = (counts[n.state] || 0) + 1;
  return Object.keys(STATES).filter((s) => counts[s]).map((s) => h('li', {}, badge(s), ' ', String(counts[s])));
}

// Too many nodes to draw: counts per state and a paged, filterable list of nodes.
function bigGraph(graph, onSelect) {
  const PAGE = 100;
  let state = '';
  let page = 0;
  const list = h('tbody');
  const info = h('p.muted', { 'aria-live': 'polite' });
  const prev = h('button.secondary', { type: 'button' }, 'Previous');
  const next = h('button.secondary', { type: 'button' }, 'Next');
  const sel = h('select#node-state', {},
    h('option', { value: '' }, 'every state'),
    Object.keys(STATES).map((s) => h('option', { value: s }, stateLabel(s))));
  const draw = () => {
    const shown = state ? graph.nodes.filter((n) => n.state === state) : graph.nodes;
    const pages = Math.max(1, Math.ceil(shown.length / PAGE));
    page = Math.min(page, pages - 1);
    list.replaceChildren(...shown.slice(page * PAGE, page * PAGE + PAGE).map((n) => h('tr', { 'data-node': n.id, 'data-state': n.state },
      h('td', {}, h('button.link.mono', { type: 'button', onclick: () => onSelect(n.id) }, n.id)),
      h('td', {}, n.type), h('td', {}, badge(n.state)), h('td', {}, n.attempts), h('td', {}, n.error || ''))));
    info.textContent = `${shown.length} nodes; page ${page + 1} of ${pages}`;
    prev.disabled = page === 0;
    next.disabled = page >= pages - 1;
  };
  sel.addEventListener('change', () => { state = sel.value; page = 0; draw(); });
  prev.addEventListener('click', () => { page -= 1; draw(); });
  next.addEventListener('click', () => { page += 1; draw(); });
  draw();
  return h('div.big', {},
    h('p', {}, `This run has ${graph.nodes.length} nodes, too many to draw; they are listed instead.`),
    h('label', { for: 'node-state' }, 'Show nodes that are '), sel,
    h('table.nodes', {}, h('thead', {}, h('tr', {}, ['Node', 'Type', 'State', 'Attempts', 'Error'].map((t) => h('th', { scope: 'col' }, t)))), list),
    h('div.pager', {}, prev, next), info);
}

export function runPage(main, me, runId) {
  const can = (scope) => me.scopes.includes(scope);
  const head = h('div');
  const graphBox = h('div.graph-box', { role: 'region', 'aria-label': 'Run graph' }, h('p.muted', {}, 'Loading…'));
  const summary = h('ul.summary', { 'aria-label': 'Nodes per state' });
  const panel = h('aside.node-panel', { hidden: true, 'aria-live': 'polite', 'aria-label': 'Node details' });
  const notice = h('div', { 'aria-live': 'polite' });
  let selected = null;
  let final = false;
  let lastGraph = '';

  const select = (nodeId) => {
    selected = nodeId;
    for (const g of graphBox.querySelectorAll('[data-node].selected')) g.classList.remove('selected');
    graphBox.querySelector(`[data-node="${CSS.escape(nodeId)}"]`)?.classList.add('selected');
    nodePanel(panel, runId, nodeId);
  };

  const actions = (run, graph) => {
    const out = [];
    if (can('runs:cancel') && !['succeeded', 'failed', 'cancelled', 'rejected'].includes(run.status)) {
      out.push(h('button.danger', {
        type: 'button', 'data-action': 'cancel',
        onclick: async () => {
          if (!confirm(`Cancel run ${run.run_id}? Its running nodes are stopped.`)) return;
          try { await post(`/v1/runs/${enc(run.run_id)}/cancel`); notice.replaceChildren(h('p.ok', {}, 'Cancel requested.')); refresh(); } catch (e) { notice.replaceChildren(errorBox(e)); }
        },
      }, 'Cancel run'));
    }
    const open = graph.nodes.filter((n) => n.state === 'dead_lettered').length;
    if (can('dlq:replay') && open > 0) {
      out.push(h('button', {
        type: 'button', 'data-action': 'retry',
        onclick: async () => {
          try { await post(`/v1/runs/${enc(run.run_id)}/retry`); notice.replaceChildren(h('p.ok', {}, 'Retry requested: the run\'s open dead letters are replayed.')); refresh(); } catch (e) { notice.replaceChildren(errorBox(e)); }
        },
      }, `Retry ${open} dead-lettered node${open === 1 ? '' : 's'}`));
    }
    return out;
  };

  const refresh = async () => {
    try {
      const [run, graph] = await Promise.all([
        get(`/v1/runs/${enc(runId)}`),
        get(`/v1/runs/${enc(runId)}/graph`),
      ]);
      final = ['succeeded', 'failed', 'cancelled', 'rejected'].includes(run.status);
      head.replaceChildren(
        h('nav.crumbs', { 'aria-label': 'Breadcrumb' }, h('a', { href: '#/runs' }, 'Runs'), ' / ', h('span.mono', {}, run.run_id)),
        h('h1', {}, run.workflow || 'run', ' ', badge(run.status, RUN_GLYPHS)),
        h('dl.facts', {},
          h('dt', {}, 'Run'), h('dd.mono', {}, run.run_id),
          h('dt', {}, 'Started'), h('dd', {}, when(run.created_ms)),
          h('dt', {}, 'Duration'), h('dd', {}, run.duration_ms !== undefined ? duration(run.duration_ms) : `${duration(Date.now() - run.created_ms)} so far`),
          run.idempotency_key ? [h('dt', {}, 'Idempotency key'), h('dd.mono', {}, run.idempotency_key)] : null,
          run.parent ? [h('dt', {}, 'Parent run'), h('dd', {}, h('a.mono', { href: '#/runs/' + enc(parentRun(run.parent)) }, parentRun(run.parent)))] : null,
          run.error ? [h('dt', {}, 'Error'), h('dd.error-text', {}, typeof run.error === 'string' ? run.error : JSON.stringify(run.error))] : null),
        h('div.actions', {}, actions(run, graph)));
      const key = JSON.stringify(graph.nodes);
      if (key !== lastGraph) {
        lastGraph = key;
        summary.replaceChildren(...stateSummary(graph.nodes));
        graphBox.replaceChildren(graph.nodes.length > BIG_GRAPH ? bigGraph(graph, select) : renderGraph(graph, select));
        if (selected) {
          graphBox.querySelector(`[data-node="${CSS.escape(selected)}"]`)?.classList.add('selected');
          nodePanel(panel, runId, selected);
        }
      }
    } catch (e) {
      head.replaceChildren(h('nav.crumbs', {}, h('a', { href: '#/runs' }, 'Runs')), errorBox(e));
      graphBox.replaceChildren();
    }
  };

  main.replaceChildren(h('section.run', {}, head, notice,
    h('div.legend', { 'aria-hidden': 'true' }, Object.keys(STATES).map((s) => badge(s))),
    summary,
    h('div.run-body', {}, graphBox, panel)));
  refresh();
  // Live while the run goes on.
  const timer = setInterval(() => {
    if (!final && !document.hidden) refresh();
  }, 2000);
  return () => clearInterval(timer);
}
