// client.js: connect a page to Deepgram with a short-lived credential from
// a dglease leasehttp.Handler. An ES module with no dependency and no build
// step; served by the handler at GET <mount>/client.js.
//
//   import { connect } from '/deepgram/client.js';
//   const ws = await connect({ endpoint: '/deepgram', url: 'wss://api.deepgram.com/v1/listen?model=nova-3' });
//   ws.onmessage = (e) => console.log(JSON.parse(e.data));
//   recorder.ondataavailable = (e) => ws.send(e.data);

/**
 * Options for {@link connect}.
 * @typedef {Object} ConnectOptions
 * @property {string} endpoint Where the leasehttp.Handler is mounted, e.g.
 *   "/deepgram" or "https://api.example.com/deepgram" (no trailing slash
 *   needed); connect POSTs to endpoint + "/credential" and "/release".
 * @property {string} url The Deepgram WebSocket URL with its query, e.g.
 *   "wss://api.deepgram.com/v1/listen?model=nova-3&interim_results=true".
 * @property {Record<string, string>} [headers] Extra headers for both
 *   POSTs, e.g. an Authorization header the server's identify reads.
 * @property {RequestCredentials} [credentials] fetch's credentials mode:
 *   "same-origin" (the default) sends cookies to the page's own origin;
 *   use "include" for an endpoint on another, allowed origin.
 * @property {AbortSignal} [signal] Aborts the credential request and the
 *   socket's opening.
 * @property {(info: CredentialInfo) => void} [onCredential] Called with
 *   what the page may know about the credential (not its secret) once it
 *   arrives, before the socket opens: e.g. to show its lease ID or expiry.
 * @property {(released: boolean) => void} [onReleased] Called once the
 *   server has been told the socket is open (true: the credential is being
 *   deleted) or could not be told (false: it expires by its TTL instead).
 */

/**
 * The error connect rejects with when the server refuses a credential or
 * the socket does not open.
 */
export class CredentialError extends Error {
  /**
   * @param {string} message What went wrong, from the server when it said.
   * @param {number} status The HTTP status of the credential request, or 0
   *   when the refusal came from the WebSocket.
   * @param {number} retryAfter Seconds to wait before asking again (a 429
   *   answer's Retry-After); 0 when the server gave none.
   */
  constructor(message, status, retryAfter) {
    super(message);
    this.name = 'CredentialError';
    /** @type {number} */
    this.status = status;
    /** @type {number} */
    this.retryAfter = retryAfter;
  }
}

/**
 * The credential POST /credential answers with.
 * @typedef {Object} Credential
 * @property {string} secret The short-lived key or token.
 * @property {string[]} subprotocol The WebSocket subprotocol list that
 *   carries it (["token", key] or ["bearer", jwt]).
 * @property {string} lease_id The lease's ID.
 * @property {string} expires When it ends by itself (RFC 3339).
 * @property {boolean} revocable Whether releasing it deletes it.
 * @property {string} release The handle to send to POST /release.
 */

/**
 * What connect tells onCredential: the credential without its secret.
 * @typedef {Object} CredentialInfo
 * @property {string} lease_id The lease's ID.
 * @property {string} expires When it ends by itself (RFC 3339).
 * @property {boolean} revocable Whether releasing it deletes it.
 */

/**
 * Asks the endpoint for a credential (POST endpoint/credential).
 * @param {ConnectOptions} opts
 * @returns {Promise<Credential>}
 * @throws {CredentialError} when the server refuses (err.retryAfter set on 429).
 *   A refusal the browser enforces itself (a cross-origin endpoint that does
 *   not allow this page's origin) rejects with fetch's TypeError instead, and
 *   an abort with the signal's reason (an AbortError by default).
 */
export async function credential(opts) {
  const res = await fetch(join(opts.endpoint, 'credential'), request(opts, '{}'));
  if (!res.ok) {
    let body = {};
    try {
      body = await res.json();
    } catch {
      // Not JSON (a proxy's error page): the status says enough.
    }
    const header = Number(res.headers.get('Retry-After'));
    const retryAfter = Number(body.retry_after) || (Number.isFinite(header) ? header : 0);
    throw new CredentialError(body.error || `credential request failed: HTTP ${res.status}`, res.status, retryAfter);
  }
  // An abort while the body arrives rejects with the abort; the lease then
  // ends by its TTL.
  let body;
  try {
    body = await res.json();
  } catch (err) {
    if (err && err.name === 'AbortError') throw err;
    body = null;
  }
  if (!body || !Array.isArray(body.subprotocol) || typeof body.release !== 'string') {
    throw new CredentialError('the answer holds no usable credential: is endpoint a leasehttp handler, or is a proxy in the way?', res.status, 0);
  }
  return body;
}

/**
 * Tells the endpoint the credential is no longer needed (POST
 * endpoint/release), so that its key is deleted now rather than at its TTL.
 * @param {ConnectOptions} opts
 * @param {string} handle The credential's release value.
 * @returns {Promise<boolean>} Whether the server accepted it.
 */
export async function release(opts, handle) {
  try {
    const res = await fetch(join(opts.endpoint, 'release'), {
      ...request(opts, JSON.stringify({ release: handle })),
      keepalive: true,
      signal: undefined,
    });
    return res.ok;
  } catch {
    return false;
  }
}

/**
 * Connects to Deepgram: asks endpoint for a credential, opens the
 * WebSocket at url with it, reports the socket open to the endpoint's
 * release route (Deepgram checks a credential when the socket opens, so
 * the stream outlives it), and resolves to the open WebSocket. If the
 * socket does not open, the credential is released all the same.
 * @param {ConnectOptions} opts
 * @returns {Promise<WebSocket>}
 * @throws {CredentialError} when the server refuses a credential (on a 429,
 *   err.retryAfter is how many seconds to wait) or the socket does not open;
 *   a TypeError for bad options, or when the browser itself blocks the
 *   request (an endpoint on another origin that does not allow this page);
 *   the signal's reason when aborted.
 */
export async function connect(opts) {
  if (!opts || !opts.endpoint || !opts.url) {
    throw new TypeError('connect needs {endpoint, url}');
  }
  const u = new URL(opts.url, location.href); // throws on a malformed url, before anything is minted
  if (u.protocol !== 'wss:' && u.protocol !== 'ws:') {
    throw new TypeError(`connect needs a ws:// or wss:// url, not ${u.protocol}`);
  }
  const cred = await credential(opts);
  if (opts.onCredential) {
    try {
      opts.onCredential({ lease_id: cred.lease_id, expires: cred.expires, revocable: cred.revocable });
    } catch (err) {
      console.error('connect: onCredential threw', err); // the stream goes on
    }
  }
  const done = (ok) => release(opts, cred.release).then((released) => {
    if (opts.onReleased) opts.onReleased(ok && released);
  });
  let ws;
  try {
    ws = new WebSocket(u.href, cred.subprotocol);
    await opened(ws, opts.signal);
  } catch (err) {
    done(false);
    if (err instanceof CredentialError || (err && err.name === 'AbortError')) throw err;
    throw new CredentialError(`the WebSocket could not be opened: ${err && err.message ? err.message : err}`, 0, 0);
  }
  done(true);
  return ws;
}

/**
 * Resolves when ws opens; rejects when it closes first or signal aborts.
 * @param {WebSocket} ws
 * @param {AbortSignal} [signal]
 * @returns {Promise<void>}
 */
function opened(ws, signal) {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      ws.removeEventListener('open', onOpen);
      ws.removeEventListener('close', onClose);
      if (signal) signal.removeEventListener('abort', onAbort);
    };
    const onOpen = () => {
      cleanup();
      resolve();
    };
    const onClose = (e) => {
      cleanup();
      reject(new CredentialError(`Deepgram closed the socket before it opened (code ${e.code}${e.reason ? ': ' + e.reason : ''})`, 0, 0));
    };
    const onAbort = () => {
      cleanup();
      ws.close();
      reject(signal.reason || new DOMException('aborted', 'AbortError'));
    };
    if (signal && signal.aborted) return onAbort();
    ws.addEventListener('open', onOpen);
    ws.addEventListener('close', onClose);
    if (signal) signal.addEventListener('abort', onAbort);
  });
}

function request(opts, body) {
  return {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...(opts.headers || {}) },
    credentials: opts.credentials || 'same-origin',
    cache: 'no-store',
    signal: opts.signal,
    body,
  };
}

function join(endpoint, route) {
  return endpoint.replace(/\/+$/, '') + '/' + route;
}
