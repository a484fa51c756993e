// Dead letters: the list with the CLI's filters, bulk replay and purge by filter (the count
// first), and one dead letter with its inputs, its node's attempts and a replay with edited
// inputs.

import { enc, get, post } from './api.js';
import { badge, errorBox, errorText, h, pre, when } from './dom.js';

const REASONS = ['permanent_error', 'retries_exhausted', 'timeout', 'worker_lost', 'TaskTooLarge', 'EncodeError', 'ChildWorkflowError'];
const FILTERS = ['workflow', 'reason', 'since', 'run_id', 'state'];

function filterQuery(filters) {
  const q = new URLSearchParams();
  for (const k of FILTERS) if (filters[k]) q.set(k, filters[k]);
  return q;
}

export function deadLetterList(main, me, query) {
  const can = (scope) => me.scopes.includes(scope);
  const filters = Object.fromEntries(FILTERS.map((k) => [k, query.get(k) || '']));
  const workflowIn = h('input#d-workflow', { value: filters.workflow, placeholder: 'name' });
  const reasonSel = h('select#d-reason', {},
    h('option', { value: '' }, 'any'),
    REASONS.map((r) => h('option', { value: r, selected: filters.reason === r }, r.replace(/_/g, ' '))));
  const sinceSel = h('select#d-since', {},
    [['', 'any time'], ['1h', 'last hour'], ['24h', 'last 24 hours'], ['7d', 'last 7 days']]
      .map(([v, t]) => h('option', { value: v, selected: filters.since === v }, t)));
  const runIn = h('input#d-run', { value: filters.run_id, placeholder: 'run id', spellcheck: 'false' });
  const anyState = h('input#d-any', { type: 'checkbox', checked: filters.state === 'any' });
  const apply = (ev) => {
    ev.preventDefault();
    const q = filterQuery({
      workflow: workflowIn.value.trim(), reason: reasonSel.value, since: sinceSel.value,
      run_id: runIn.value.trim(), state: anyState.checked ? 'any' : '',
    });
    location.hash = '#/dead-letters' + (q.toString() ? '?' + q : '');
  };
  const tbody = h('tbody');
  const problem = h('div', { 'aria-live': 'polite' });
  const bulk = h('div.actions');

  // Bulk actions by the current filter: ask for the count (dry run), confirm, then act.
  const bulkAction = (label, path, scope, extra) => {
    if (!can(scope)) return null;
    return h(`button${label === 'Purge' ? '.danger' : ''}`, {
      type: 'button', 'data-action': label.toLowerCase(),
      onclick: async () => {
        problem.replaceChildren();
        const body = { ...Object.fromEntries(Object.entries(filters).filter(([k, v]) => v && k !== 'state')), ...extra };
        try {
          const { data: dry } = await post(path, { ...body, dry_run: true });
          if (dry.count === 0) {
            problem.replaceChildren(h('p.ok', {}, 'No open dead letter matches these filters.'));
            return;
          }
          if (!confirm(`${label} ${dry.count} open dead letter${dry.count === 1 ? '' : 's'} matching these filters?`)) return;
          const { data } = await post(path, body);
          const done = data.replayed ? data.replayed.length : data.count;
          const failed = data.failed && data.failed.length ? `; ${data.failed.length} could not be: ${data.failed.map((f) => f.error).join('; ')}` : '';
          problem.replaceChildren(h('p.ok', { role: 'status' }, `${label === 'Purge' ? 'Purged' : 'Replayed'} ${done}${failed}.`));
          load();
        } catch (e) {
          problem.replaceChildren(errorBox(e));
        }
      },
    }, `${label} all matching…`);
  };
  bulk.replaceChildren(...[
    bulkAction('Replay', '/v1/dead-letters/replay', 'dlq:replay', {}),
    bulkAction('Purge', '/v1/dead-letters/purge', 'dlq:purge', {}),
  ].filter(Boolean));

  const load = async () => {
    try {
      const q = filterQuery(filters);
      q.set('limit', '500');
      const { dead_letters: list } = await get('/v1/dead-letters?' + q);
      tbody.replaceChildren(...list.map((d) => h('tr', { 'data-dead-letter': d.id },
        h('td', {}, h('a.mono', { href: '#/dead-letters/' + enc(d.id) }, d.id)),
        h('td', {}, d.workflow),
        h('td', {}, d.node_id),
        h('td', {}, d.reason.replace(/_/g, ' ')),
        h('td', {}, badge(d.state === 'open' ? 'dead_lettered' : d.state)),
        h('td', {}, when(d.failed_ms)),
        h('td', {}, d.error || ''))));
      if (!list.length) tbody.replaceChildren(h('tr', {}, h('td.muted', { colspan: 7 }, 'No dead letters match these filters.')));
    } catch (e) {
      problem.replaceChildren(errorBox(e));
    }
  };
  main.replaceChildren(h('section', {},
    h('h1', {}, 'Dead letters'),
    h('form.filters', { onsubmit: apply, 'aria-label': 'Filter dead letters' },
      h('label', { for: 'd-workflow' }, 'Workflow'), workflowIn,
      h('label', { for: 'd-reason' }, 'Reason'), reasonSel,
      h('label', { for: 'd-since' }, 'Failed'), sinceSel,
      h('label', { for: 'd-run' }, 'Run'), runIn,
      anyState, h('label', { for: 'd-any' }, 'include replayed and purged'),
      h('button', { type: 'submit' }, 'Filter')),
    bulk, problem,
    h('table.dead-letters', {},
      h('caption.sr-only', {}, 'Dead letters, oldest first'),
      h('thead', {}, h('tr', {}, ['Dead letter', 'Workflow', 'Node', 'Reason', 'State', 'Failed', 'Error'].map((t) => h('th', { scope: 'col' }, t)))),
      tbody)));
  load();
}

/// Checks the replay editor's text: `{object}` of inputs, or the reason it is not.
export function parseInputs(text) {
  let value;
  try {
    value = JSON.parse(text);
  } catch (e) {
    return { error: `not JSON: ${e.message}` };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return { error: 'must be a JSON object of input names to values' };
  }
  return { value };
}

export function deadLetterPage(main, me, id) {
  const can = (scope) => me.scopes.includes(scope);
  const body = h('div', {}, h('p.muted', {}, 'Loading…'));
  main.replaceChildren(h('section', {},
    h('nav.crumbs', { 'aria-label': 'Breadcrumb' }, h('a', { href: '#/dead-letters' }, 'Dead letters'), ' / ', h('span.mono', {}, id)),
    body));
  (async () => {
    try {
      const { dead_letter: d, attempts } = await get(`/v1/dead-letters/${enc(id)}`);
      // The node's configuration: what the inputs are laid over (a credential without
      // runs:read replays over the inputs alone).
      const config = await get(`/v1/runs/${enc(d.run_id)}/nodes/${enc(d.node_id)}`)
        .then((n) => (n.config && typeof n.config === 'object' ? n.config : {}))
        .catch(() => ({}));
      const parts = [
        h('h1', {}, `${d.workflow} · ${d.node_id}`, ' ', badge(d.state === 'open' ? 'dead_lettered' : d.state)),
        h('dl.facts', {},
          h('dt', {}, 'Run'), h('dd', {}, h('a.mono', { href: '#/runs/' + enc(d.run_id) }, d.run_id), ` (${d.run_status})`),
          h('dt', {}, 'Reason'), h('dd', {}, d.reason.replace(/_/g, ' ')),
          h('dt', {}, 'Failed'), h('dd', {}, when(d.failed_ms)),
          h('dt', {}, 'Error'), h('dd.error-text', {}, errorText(d.error_type, d.error)),
          d.replayed_by ? [h('dt', {}, 'Replayed'), h('dd', {}, `${when(d.replayed_ms)} by ${d.replayed_by}`)] : null),
      ];
      if (d.state === 'open' && can('dlq:replay')) parts.push(replayForm(d, config));
      else parts.push(h('h2', {}, 'Inputs'), pre(d.inputs || {}));
      parts.push(h('h2', {}, `Attempts of ${d.node_id} (${attempts.length})`),
        h('table.attempts', {},
          h('thead', {}, h('tr', {}, ['Iteration', 'Attempt', 'Status', 'Worker', 'Dispatched', 'Error'].map((t) => h('th', { scope: 'col' }, t)))),
          h('tbody', {}, attempts.map((a) => h('tr', {},
            h('td', {}, a.iteration), h('td', {}, a.attempt), h('td', {}, a.status),
            h('td.mono', {}, a.worker_id || '—'), h('td', {}, when(a.dispatched_ms)), h('td', {}, a.error || ''))))));
      body.replaceChildren(...parts);
    } catch (e) {
      body.replaceChildren(errorBox(e));
    }
  })();
}

function replayForm(d, config) {
  // What the attempt ran with: its configuration, its inputs over it.
  const before = { ...config, ...(d.inputs || {}) };
  const text = JSON.stringify(before, null, 2);
  const editor = h('textarea#replay-inputs.json-editor', {
    rows: Math.min(24, Math.max(6, text.split('\n').length + 1)), spellcheck: 'false',
    'aria-describedby': 'replay-check',
  }, text);
  const check = h('p#replay-check.help', { 'aria-live': 'polite' }, 'Valid JSON object.');
  const submit = h('button', { type: 'submit', 'data-action': 'replay' }, 'Replay with these inputs');
  const outcome = h('div', { 'aria-live': 'polite' });
  const validate = () => {
    const r = parseInputs(editor.value);
    check.textContent = r.error ? `Cannot replay: the inputs are ${r.error}.` : 'Valid JSON object.';
    check.classList.toggle('error-text', Boolean(r.error));
    editor.setAttribute('aria-invalid', r.error ? 'true' : 'false');
    submit.disabled = Boolean(r.error);
    return r;
  };
  editor.addEventListener('input', validate);
  const form = h('form.replay', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      const r = validate();
      if (r.error) return;
      // Only what changed is sent as overrides; the rest the attempt had already.
      const set = {};
      for (const [k, v] of Object.entries(r.value)) {
        if (JSON.stringify(before[k]) !== JSON.stringify(v)) set[k] = v;
      }
      submit.disabled = true;
      try {
        const { data } = await post(`/v1/dead-letters/${enc(d.id)}/replay`, { set });
        outcome.replaceChildren(h('p.ok', { role: 'status' },
          `Replayed: ${data.node_id} runs again as attempt ${data.attempt}. `,
          h('a', { href: '#/runs/' + enc(data.run_id) }, 'Follow the run')));
      } catch (e) {
        submit.disabled = false;
        outcome.replaceChildren(errorBox(e));
      }
    },
  },
  h('h2', {}, h('label', { for: 'replay-inputs' }, 'Inputs (edit, then replay)')),
  h('p.help', {}, 'The node\'s configuration with the inputs the failed attempt ran with laid over it. What you change is sent as overrides; a key you remove keeps its old value.'),
  editor, check, submit, outcome);
  return form;
}
