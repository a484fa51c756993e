// The dashboard's entry: who is signed in, and which page the address names
// (#/runs, #/runs?status=failed, #/runs/<run id>).

import { credential, get, setCredential, whenUnauthenticated } from './api.js';
import { runPage, runsList, signIn } from './views.js';

const main = document.getElementById('main');
let me = null;
let stop = () => {};

function showWho() {
  const who = document.getElementById('who');
  const nav = document.getElementById('nav');
  who.hidden = nav.hidden = !me;
  if (me) document.getElementById('who-text').textContent = `${me.tenant} · ${me.role}`;
}

function route() {
  stop();
  stop = () => {};
  if (!me) {
    signIn(main, (who) => {
      me = who;
      showWho();
      route();
    });
    return;
  }
  const hash = location.hash.replace(/^#/, '') || '/runs';
  const [path, query] = hash.split('?');
  const params = new URLSearchParams(query || '');
  const parts = path.split('/').filter(Boolean);
  for (const a of document.querySelectorAll('#nav a')) {
    a.toggleAttribute('aria-current', a.dataset.section === parts[0]);
  }
  let done;
  if (parts[0] === 'runs' && parts[1]) {
    done = runPage(main, me, decodeURIComponent(parts[1]));
    document.title = `Run ${decodeURIComponent(parts[1])} · Kora`;
  } else {
    done = runsList(main, me, params);
    document.title = 'Runs · Kora';
  }
  if (typeof done === 'function') stop = done;
}

whenUnauthenticated((e) => {
  setCredential(null);
  me = null;
  showWho();
  stop();
  signIn(main, (who) => {
    me = who;
    showWho();
    route();
  }, e);
});

document.getElementById('sign-out').addEventListener('click', () => {
  setCredential(null);
  me = null;
  showWho();
  route();
});

window.addEventListener('hashchange', route);

(async () => {
  if (credential()) {
    try {
      me = await get('/v1/me');
    } catch {
      me = null;
    }
  }
  showWho();
  route();
})();
