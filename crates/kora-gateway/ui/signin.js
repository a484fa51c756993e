// The sign-in page: a key or a token, checked with GET /v1/me before it is kept.

import { call, setCredential } from './api.js';
import { errorBox, h } from './dom.js';

export function signIn(main, onSignedIn, reason) {
  const input = h('input#credential', {
    type: 'password', autocomplete: 'off', required: true, spellcheck: 'false',
    'aria-describedby': 'credential-help',
  });
  const status = h('div', { 'aria-live': 'polite' }, reason ? errorBox(reason) : null);
  const form = h('form.card.sign-in', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      status.replaceChildren();
      const token = input.value.trim();
      try {
        const { data } = await call('GET', '/v1/me', undefined, token);
        setCredential(token);
        onSignedIn(data);
      } catch (e) {
        status.replaceChildren(errorBox(e.status === 401
          ? new Error('The gateway refused this credential: check it is a current API key (kora_…) or a valid token.')
          : e));
      }
    },
  },
  h('h1', {}, 'Sign in'),
  h('label', { for: 'credential' }, 'API key or token'),
  input,
  h('p.help#credential-help', {}, 'An API key from ', h('code', {}, 'kora keys create'), ' or a JWT from your identity provider. It is kept in this tab only.'),
  h('button', { type: 'submit' }, 'Sign in'),
  status);
  main.replaceChildren(form);
  input.focus();
}

