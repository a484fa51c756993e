// Triggers: the tenant's triggers with pause and resume, and a form creating one (a NATS
// subject, a cron schedule or a webhook) for a registered workflow.

import { enc, get, post } from './api.js';
import { errorBox, h, when } from './dom.js';
import { parseInputs } from './dead_letters.js';

export function triggerList(main, me) {
  const can = (scope) => me.scopes.includes(scope);
  const tbody = h('tbody');
  const status = h('div', { 'aria-live': 'polite' });

  const toggle = (t) => h('button.secondary', {
    type: 'button', 'data-action': t.paused ? 'resume' : 'pause', 'aria-label': `${t.paused ? 'Resume' : 'Pause'} trigger ${t.name}`,
    onclick: async () => {
      try {
        await post(`/v1/triggers/${enc(t.name)}/${t.paused ? 'resume' : 'pause'}`);
        status.replaceChildren(h('p.ok', { role: 'status' }, `${t.name} ${t.paused ? 'resumed' : 'paused'}.`));
        load();
      } catch (e) {
        status.replaceChildren(errorBox(e));
      }
    },
  }, t.paused ? 'Resume' : 'Pause');

  const load = async () => {
    try {
      const { triggers } = await get('/v1/triggers');
      tbody.replaceChildren(...triggers.map((t) => h('tr', { 'data-trigger': t.name },
        h('td.mono', {}, t.name),
        h('td', {}, t.kind),
        h('td.mono', {}, t.subject || t.schedule || (t.kind === 'webhook' ? `/v1/hooks/${t.name}` : '')),
        h('td', {}, t.workflow),
        h('td', {}, h(`span.badge.st-${t.paused ? 'pending' : 'succeeded'}`, {}, t.paused ? '⏸ paused' : '▶ active')),
        h('td', {}, when(t.updated_ms)),
        can('triggers:write') ? h('td', {}, toggle(t)) : null)));
      if (!triggers.length) tbody.replaceChildren(h('tr', {}, h('td.muted', { colspan: 7 }, 'No triggers yet.')));
    } catch (e) {
      status.replaceChildren(errorBox(e));
    }
  };

  const heads = ['Name', 'Kind', 'Source', 'Workflow', 'State', 'Changed'];
  if (can('triggers:write')) heads.push('Action');
  main.replaceChildren(h('section', {},
    h('h1', {}, 'Triggers'),
    status,
    h('table.triggers', {},
      h('caption.sr-only', {}, 'Triggers'),
      h('thead', {}, h('tr', {}, heads.map((t) => h('th', { scope: 'col' }, t)))),
      tbody),
    can('triggers:write') ? createForm(load, status) : null));
  load();
}

function createForm(reload, status) {
  const name = h('input#t-name', { required: true, pattern: '[A-Za-z0-9_-]{1,64}', spellcheck: 'false' });
  const kind = h('select#t-kind', {},
    h('option', { value: 'subject' }, 'NATS subject'),
    h('option', { value: 'schedule' }, 'cron schedule'),
    h('option', { value: 'webhook' }, 'webhook'));
  const source = h('input#t-source', { spellcheck: 'false', placeholder: 'orders.created' });
  const sourceLabel = h('label', { for: 't-source' }, 'Subject');
  const workflow = h('input#t-workflow', { required: true, placeholder: 'a registered workflow' });
  const params = h('textarea#t-params.json-editor', { rows: 3, spellcheck: 'false', 'aria-describedby': 't-params-check' }, '{}');
  const check = h('p#t-params-check.help', { 'aria-live': 'polite' }, 'Parameters every run gets (a JSON object).');
  kind.addEventListener('change', () => {
    source.disabled = kind.value === 'webhook';
    sourceLabel.textContent = kind.value === 'schedule' ? 'Schedule' : 'Subject';
    source.placeholder = kind.value === 'schedule' ? '*/5 * * * *' : kind.value === 'webhook' ? 'none: signed requests to /v1/hooks/<name>' : 'orders.created';
  });
  const secret = h('div', { 'aria-live': 'polite' });
  return h('form.card.create', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      const p = parseInputs(params.value);
      if (p.error) {
        check.textContent = `The parameters are ${p.error}.`;
        check.classList.add('error-text');
        return;
      }
      const body = { name: name.value.trim(), workflow_name: workflow.value.trim(), params: p.value };
      if (kind.value === 'webhook') body.webhook = true;
      else body[kind.value] = source.value.trim();
      try {
        const { data } = await post('/v1/triggers', body);
        status.replaceChildren(h('p.ok', { role: 'status' }, `Trigger ${data.name} created.`));
        secret.replaceChildren(...(data.secret
          ? [h('p.ok', {}, 'Its signing secret, shown once: ', h('code', {}, data.secret), ` (sign requests to ${data.hook_path}).`)]
          : []));
        ev.target.reset();
        kind.dispatchEvent(new Event('change'));
        reload();
      } catch (e) {
        status.replaceChildren(errorBox(e));
      }
    },
  },
  h('h2', {}, 'New trigger'),
  h('div.grid', {},
    h('label', { for: 't-name' }, 'Name'), name,
    h('label', { for: 't-kind' }, 'Starts a run on'), kind,
    sourceLabel, source,
    h('label', { for: 't-workflow' }, 'Workflow'), workflow,
    h('label', { for: 't-params' }, 'Parameters'), h('div', {}, params, check)),
  h('button', { type: 'submit' }, 'Create trigger'),
  secret);
}
