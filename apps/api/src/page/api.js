// The api as the page uses it. Every call sends the access token when one was given
// (auth off, in development, needs none) and turns an error answer into one line.
//
// The token is kept in this tab's sessionStorage of the api's origin only: previews run
// on origins of their own and cannot read it, and it is gone when the tab closes.

const TOKEN_KEY = 'velocity-preview.token';

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) ?? '';
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
  // Earlier versions kept it in localStorage, which outlives the tab.
  localStorage.removeItem(TOKEN_KEY);
}

export function authHeaders() {
  const token = getToken();
  return token ? { authorization: `Bearer ${token}` } : {};
}

/** An answer of 400 and up, with the api's own message (`{ statusCode, error, message }`). */
export class ApiError extends Error {
  constructor(method, path, status, body) {
    const detail = body && typeof body === 'object' && body.message ? body.message : typeof body === 'string' && body ? body : `HTTP ${status}`;
    super(`${method} ${path} answered ${status}: ${detail}`);
    this.status = status;
    this.body = body;
  }
}

export async function call(method, path, body) {
  let res;
  try {
    res = await fetch(path, {
      method,
      headers: { ...authHeaders(), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new Error(`${method} ${path} failed: ${err.message} (is the api running?)`);
  }
  const text = await res.text();
  let parsed = text;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    // not JSON: keep the text
  }
  if (!res.ok) throw new ApiError(method, path, res.status, parsed);
  return parsed;
}
