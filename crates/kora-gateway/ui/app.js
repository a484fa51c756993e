// The dashboard's entry: who is signed in, and which page the address names
// (#/runs, #/runs?status=failed, #/runs/<run id>, #/dead-letters, #/dead-letters/<id>,
// #/triggers, #/overview, #/fleet).

import { credential, get, setCredential, whenUnauthenticated } from './api.js';
import { deadLetterList, deadLetterPage } from './dead_letters.js';
import { fleetPage, overviewPage } from './overview.js';
import { runPage } from './run.js';
import { runsList } from './runs.js';
import { signIn } from './signin.js';
import { triggerList } from './triggers.js';

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
  const id = parts[1] ? decodeURIComponent(parts[1]) : null;
  if (parts[0] === 'runs' && id) {
    done = runPage(main, me, id);
    document.title = `Run ${id} · Kora`;
  } else if (parts[0] === 'dead-letters' && id) {
    done = deadLetterPage(main, me, id);
    document.title = `Dead letter ${id} · Kora`;
  } else if (parts[0] === 'dead-letters') {
    done = deadLetterList(main, me, params);
    document.title = 'Dead letters · Kora';
  } else if (parts[0] === 'overview') {
    done = overviewPage(main, me, params);
    document.title = 'Overview · Kora';
  } else if (parts[0] === 'fleet') {
    done = fleetPage(main, me, params);
    document.title = 'Queues and workers · Kora';
  } else if (parts[0] === 'triggers') {
    done = triggerList(main, me);
    document.title = 'Triggers · Kora';
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
