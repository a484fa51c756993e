// A run's page: its facts and actions, its graph (or, past 300 nodes, its node list), the
// node panel, the attempt timeline and the run's events.

import { enc, get, post } from './api.js';
import { badge, duration, errorBox, errorText, fill, h, pre, RUN_GLYPHS, when } from './dom.js';
import { render as renderGraph, renderGrouped, stateLabel, STATES } from './graph.js';
import { parseInputs } from './dead_letters.js';
import { eventsSection, timeline } from './timeline.js';

const BIG_GRAPH = 300;

function parentRun(parent) {
  // A parent attempt is `<run>:<node>:<iteration>:<attempt>`.
  const parts = parent.split(':');
  return parts.length > 3 ? parts.slice(0, -3).join(':') : parent;
}


// "Run again from here": the node and everything downstream, with inputs set over its own
// (POST /v1/runs/{id}/retry {from, set}).
function restartForm(runId, nodeId, ctx) {
  const editor = h('textarea#restart-set.json-editor', { rows: 4, spellcheck: 'false', 'aria-describedby': 'restart-check' }, '{}');
  const check = h('p#restart-check.help', { 'aria-live': 'polite' }, 'Inputs to set on this node (a JSON object; {} for none).');
  const submit = h('button', { type: 'submit', 'data-action': 'restart' }, `Run again from ${nodeId}`);
  const outcome = h('div', { 'aria-live': 'polite' });
  editor.addEventListener('input', () => {
    const r = parseInputs(editor.value);
    check.textContent = r.error ? `Cannot run: the inputs are ${r.error}.` : 'Inputs to set on this node (a JSON object; {} for none).';
    check.classList.toggle('error-text', Boolean(r.error));
    submit.disabled = Boolean(r.error);
  });
  return h('form.replay', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      const r = parseInputs(editor.value);
      if (r.error) return;
      if (!confirm(`Run ${nodeId} and everything downstream of it again?`)) return;
      try {
        await post(`/v1/runs/${enc(runId)}/retry`, { from: nodeId, set: r.value });
        // On the page, not in the panel: the panel is drawn again as the run changes.
        ctx.notify(h('p.ok', { role: 'status' }, `${nodeId} runs again; the run reopened.`));
        ctx.refresh();
      } catch (e) {
        outcome.replaceChildren(errorBox(e));
      }
    },
  },
  h('h3', {}, h('label', { for: 'restart-set' }, 'Run again from this node')),
  editor, check, submit, outcome);
}

// What feeds a node: its inbound connections (`input ← source.output`), each source a button
// opening that node.
function fedBy(nodeId, ctx) {
  const inbound = (ctx && ctx.edges ? ctx.edges : []).filter((e) => e.target === nodeId);
  if (!inbound.length) return h('p.muted', {}, 'No connection feeds it: its inputs are its configuration and the run\'s parameters.');
  return h('ul.fed-by', {}, inbound.map((e) => h('li', {},
    h('code', {}, e.input), ' ← ',
    h('button.link.mono', { type: 'button', onclick: () => ctx.select(e.source) }, `${e.source}.${e.output}`),
    e.cycle ? ` (cycle ${e.cycle}, the previous iteration)` : '')));
}

async function nodePanel(panel, runId, nodeId, ctx) {
  panel.hidden = false;
  panel.replaceChildren(h('p.muted', {}, `Loading ${nodeId}…`));
  try {
    const n = await get(`/v1/runs/${enc(runId)}/nodes/${enc(nodeId)}`);
    const children = n.attempts.map((a) => a.child_run_id).filter(Boolean);
    fill(panel,
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
      children.length ? h('p', {}, 'Child runs: ', children.map((c, i) => [i ? ', ' : '', h('a.mono', { href: '#/runs/' + enc(c), 'data-child': c }, c)])) : null,
      h('h3', {}, 'Fed by'), fedBy(nodeId, ctx),
      h('h3', {}, 'Inputs'),
      n.attempts.some((a) => a.inputs) ? null : h('p.muted', {}, 'None recorded.'),
      n.attempts.filter((a) => a.inputs).map((a, k, all) => h('details.inputs', { open: k === all.length - 1, 'data-inputs': `${a.iteration}:${a.attempt}` },
        h('summary', {}, `Attempt ${a.attempt}${a.iteration ? `, iteration ${a.iteration}` : ''}: `,
          a.inputs_from === 'recorded' ? 'as recorded with its dead letter' : 'recomputed from its sources\' outputs'),
        pre(a.inputs),
        a.dead_letter === 'open' && a.dead_letter_id ? h('p', {}, h('a', { href: '#/dead-letters/' + enc(a.dead_letter_id) }, 'Open the dead letter to replay it')) : null)),
      h('h3', {}, 'Result'), h('div.node-result', {}, pre(n.result)),
      h('h3', {}, 'Configuration'), pre(n.config),
      ctx && ctx.final && ctx.can('dlq:replay') ? restartForm(runId, nodeId, ctx) : null);
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

// Too many nodes to draw one by one: the graph drawn by groups of layers (click one to list
// its nodes), and a paged list of nodes filterable by state.
function bigGraph(graph, onSelect) {
  const PAGE = 100;
  let state = '';
  let page = 0;
  let group = null;
  const groupNote = h('p.muted', { 'aria-live': 'polite' });
  const list = h('tbody');
  const info = h('p.muted', { 'aria-live': 'polite' });
  const prev = h('button.secondary', { type: 'button' }, 'Previous');
  const next = h('button.secondary', { type: 'button' }, 'Next');
  const sel = h('select#node-state', {},
    h('option', { value: '' }, 'every state'),
    Object.keys(STATES).map((s) => h('option', { value: s }, stateLabel(s))));
  const draw = () => {
    const inGroup = group ? new Set(group.nodes) : null;
    const shown = graph.nodes.filter((n) => (!state || n.state === state) && (!inGroup || inGroup.has(n.id)));
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
  const grouped = renderGrouped(graph, (g) => {
    group = g;
    page = 0;
    groupNote.replaceChildren(`Listing the ${g.nodes.length} nodes of ${g.first === g.last ? `layer ${g.first}` : `layers ${g.first}–${g.last}`}. `,
      h('button.link', { type: 'button', onclick: () => { group = null; groupNote.replaceChildren(); draw(); } }, 'List every node'));
    draw();
  });
  return h('div.big', {},
    h('p', {}, `This run has ${graph.nodes.length} nodes: drawn by groups of layers (select one to list its nodes), and listed below.`),
    h('div.grouped-box', {}, grouped),
    groupNote,
    h('label', { for: 'node-state' }, 'Show nodes that are '), sel,
    h('table.nodes', {}, h('thead', {}, h('tr', {}, ['Node', 'Type', 'State', 'Attempts', 'Error'].map((t) => h('th', { scope: 'col' }, t)))), list),
    h('div.pager', {}, prev, next), info);
}

export function runPage(main, me, runId) {
  const can = (scope) => me.scopes.includes(scope);
  const head = h('div');
  const graphBox = h('div.graph-box', { role: 'region', 'aria-label': 'Run graph' }, h('p.muted', {}, 'Loading…'));
  const summary = h('ul.summary', { 'aria-label': 'Nodes per state' });
  const timelineBox = h('div', {}, h('p.muted', {}, 'Loading…'));
  const panel = h('aside.node-panel', { hidden: true, 'aria-live': 'polite', 'aria-label': 'Node details' });
  const notice = h('div', { 'aria-live': 'polite' });
  let selected = null;
  let final = false;
  let edges = [];
  let lastGraph = '';

  const select = (nodeId) => {
    selected = nodeId;
    for (const g of graphBox.querySelectorAll('[data-node].selected')) g.classList.remove('selected');
    graphBox.querySelector(`[data-node="${CSS.escape(nodeId)}"]`)?.classList.add('selected');
    nodePanel(panel, runId, nodeId, ctx);
  };

  const actions = (run, graph) => {
    const out = [];
    if (can('runs:cancel') && !['succeeded', 'failed', 'cancelled', 'rejected'].includes(run.status)) {
      out.push(h('button.danger', {
        type: 'button', 'data-action': 'cancel',
        onclick: async () => {
          if (!confirm(`Cancel run ${run.run_id}? Its running nodes are stopped.`)) return;
          try { await post(`/v1/runs/${enc(run.run_id)}/cancel`); notice.replaceChildren(h('p.ok', {}, 'Cancel requested.')); kick(); } catch (e) { notice.replaceChildren(errorBox(e)); }
        },
      }, 'Cancel run'));
    }
    const open = graph.nodes.filter((n) => n.state === 'dead_lettered').length;
    if (can('dlq:replay') && open > 0) {
      out.push(h('button', {
        type: 'button', 'data-action': 'retry',
        onclick: async () => {
          try { await post(`/v1/runs/${enc(run.run_id)}/retry`); notice.replaceChildren(h('p.ok', {}, 'Retry requested: the run\'s open dead letters are replayed.')); kick(); } catch (e) { notice.replaceChildren(errorBox(e)); }
        },
      }, `Retry ${open} dead-lettered node${open === 1 ? '' : 's'}`));
    }
    return out;
  };

  // After an action the run changes state soon: keep reading it for a while, even if it had
  // ended.
  let followUntil = 0;
  const kick = () => {
    followUntil = Date.now() + 30000;
    refresh();
  };
  const ctx = {
    get final() { return final; },
    get edges() { return edges; },
    can,
    refresh: kick,
    notify: (m) => notice.replaceChildren(m),
    select: (nodeId) => select(nodeId),
  };

  const refresh = async () => {
    try {
      // A big run's page reads no attempt history: the graph's states and the run's summary.
      const graph = await get(`/v1/runs/${enc(runId)}/graph`);
      const big = graph.nodes.length > BIG_GRAPH;
      const run = await get(`/v1/runs/${enc(runId)}${big ? '?view=summary' : ''}`);
      final = ['succeeded', 'failed', 'cancelled', 'rejected'].includes(run.status);
      edges = graph.edges;
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
        timelineBox.replaceChildren(graph.nodes.length > BIG_GRAPH
          ? h('p.muted', {}, 'Not drawn for a run this large.')
          : timeline(run.attempts, run));
        if (selected) {
          graphBox.querySelector(`[data-node="${CSS.escape(selected)}"]`)?.classList.add('selected');
          nodePanel(panel, runId, selected, ctx);
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
    h('div.run-body', {}, graphBox, panel),
    h('h2', {}, 'Timeline'),
    timelineBox,
    eventsSection(runId)));
  refresh();
  // Live while the run goes on (and for a while after an action).
  const timer = setInterval(() => {
    if ((!final || Date.now() < followUntil) && !document.hidden) refresh();
  }, 2000);
  return () => clearInterval(timer);
}
