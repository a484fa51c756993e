// The dashboard's only way out: the gateway's public /v1 API, with the signed-in credential.
// The credential lives in sessionStorage (gone when the tab closes), never in a cookie, so
// no other site can make the browser use it.

const KEY = 'kora.credential';

export function credential() {
  return sessionStorage.getItem(KEY);
}

export function setCredential(value) {
  if (value) sessionStorage.setItem(KEY, value);
  else sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// Called when the gateway refuses the credential (401): the app signs out.
let onUnauthenticated = () => {};
export function whenUnauthenticated(f) {
  onUnauthenticated = f;
}

export async function call(method, path, body, token) {
  const headers = { Authorization: 'Bearer ' + (token ?? credential() ?? '') };
  const init = { method, headers };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'network', 'the gateway cannot be reached: ' + e.message);
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    const err = (data && data.error) || {};
    const e = new ApiError(res.status, err.code || 'http_' + res.status, err.message || text || res.statusText);
    if (res.status === 401 && token === undefined) onUnauthenticated(e);
    throw e;
  }
  return { status: res.status, data };
}

export const get = (path) => call('GET', path).then((r) => r.data);
export const post = (path, body) => call('POST', path, body ?? {});

export const enc = encodeURIComponent;
