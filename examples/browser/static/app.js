// The demo page: stream the microphone to Deepgram with a credential leased
// by the backend, and show each step of the credential's life.
//
//   1. connect() from leasehttp's client.js: POST /api/deepgram/credential,
//      new WebSocket(listen_url, subprotocol), and once the socket is open
//      POST /api/deepgram/release (the backend deletes the key)
//   2. GET /api/status/{lease_id}, a few times, to see the key deleted
//      (connect's onCredential tells the page the lease ID)
//   3. MediaRecorder chunks every 250 ms -> socket; Results -> transcript
//   4. Stop -> {"type": "CloseStream"}
//   5. GET /api/usage before and after the stream: the audio it used, as
//      Deepgram counts it by the visitor's tag
//
// With "Deepgram's browser SDK" chosen, the page asks for the credential
// itself (client.js's credential), hands it to the SDK, and releases it
// (client.js's release) once the SDK's socket is open, or as soon as it is
// known never to open.
//
// Every press of Start begins a new session; whatever an older one still
// has in flight (a status poll, a usage read, a socket's close) writes
// nothing once a newer one began: see current().

import { connect, credential, release, CredentialError } from '/api/deepgram/client.js';

const ENDPOINT = '/api/deepgram'; // where the backend mounts leasehttp

const $ = (id) => document.getElementById(id);
const startButton = $('start');
const stopButton = $('stop');
const START_LABEL = startButton.textContent;

const CHUNK_MS = 250;       // MediaRecorder timeslice
const STATUS_POLLS = 10;    // status checks after release
const STATUS_EVERY_MS = 500;
const CLOSE_WAIT_MS = 5000; // how long Stop waits for Deepgram to close

let session = null;         // the session Start last began: see start()
let backend = 'Deepgram';   // its name, from /api/about
let kind = 'token';         // "token" (API keys) or "bearer" (grant tokens)
let listenUrl = '';         // the WebSocket URL, from /api/about
let usageAvailable = false; // whether /api/usage can read usage back

// current reports whether s is the session Start last began: only it may
// write to the page.
const current = (s) => s === session;

// ---- page helpers ---------------------------------------------------------

function setState(s, text) {
  if (current(s)) $('state').textContent = text;
}

function showError(s, text) {
  if (!current(s)) return;
  const el = $('error');
  el.textContent = text;
  el.hidden = !text;
}

function clock(date) {
  return date.toLocaleTimeString([], { hour12: false });
}

// step adds (or, for a step name already shown, updates) one line of s's
// timeline. tone is "ok", "warn", "err" or ""; before, if set, names a step
// to insert a new line before.
function step(s, name, title, detail, tone = '', before = '') {
  if (!current(s)) return;
  const list = $('timeline');
  list.querySelector('.placeholder')?.remove();
  let li = list.querySelector(`li[data-step="${name}"]`);
  if (!li) {
    li = document.createElement('li');
    li.dataset.step = name;
    const next = before && list.querySelector(`li[data-step="${before}"]`);
    if (next) next.before(li);
    else list.append(li);
  }
  li.className = tone;
  li.replaceChildren();
  const time = document.createElement('time');
  time.textContent = clock(new Date());
  const strong = document.createElement('strong');
  strong.textContent = title;
  li.append(time, strong, detail ? ' ' + detail : '');
}

function resetPage() {
  $('error').textContent = '';
  $('error').hidden = true;
  $('timeline').replaceChildren();
  const nothing = document.createElement('p');
  nothing.className = 'placeholder';
  nothing.textContent = 'Listening…';
  $('transcript').replaceChildren(nothing);
}

function kindName(k) {
  return k === 'bearer' ? 'grant token' : 'API key';
}

function capitalized(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function loadAbout() {
  try {
    const res = await fetch('/api/about', { cache: 'no-store' });
    const about = await res.json();
    backend = about.backend;
    kind = about.kind;
    listenUrl = about.listen_url;
    usageAvailable = about.usage;
    const sdkOption = $('client').querySelector('option[value="sdk"]');
    sdkOption.disabled = !about.sdk;
    if (!about.sdk) sdkOption.textContent += ' (not installed: npm ci in internal/conformance)';
    const el = $('about');
    el.replaceChildren();
    const name = document.createElement('strong');
    name.textContent = about.backend;
    el.append('Backend: ', name,
      ` · credentials: ${kindName(about.kind)}s that live ${about.ttl_seconds} s · stream: `);
    const url = document.createElement('code');
    url.textContent = about.listen_url;
    el.append(url);
    startButton.disabled = false;
  } catch (err) {
    console.error(err);
    $('about').textContent = 'The backend is not answering: reload the page.';
  }
}

// ---- the stream -----------------------------------------------------------

async function start() {
  const s = {
    media: null,
    socket: null,
    recorder: null,
    kind,
    leaseId: '',       // from the credential (connect's onCredential, or the SDK's)
    opened: false,
    stopping: false,   // Stop was pressed
    closedByPage: false,
    ended: false,
    deletedAt: null,   // when the status said the key is gone
    afterDelete: 0,    // results received since then
    usageBefore: null, // GET /api/usage before the stream, or null
  };
  session = s;
  startButton.disabled = true;
  resetPage();

  // Ask for the microphone first: a permission prompt can take longer
  // than the credential lives.
  setState(s, 'Asking for the microphone…');
  try {
    s.media = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (err) {
    fail(s, `No microphone: ${err.message}`);
    return;
  }
  step(s, 'mic', 'Microphone allowed.');
  // The visitor's usage so far today, to show what this stream adds.
  s.usageBefore = usageAvailable ? await getUsage() : null;

  setState(s, 'Asking the backend for a credential…');
  const params = new URLSearchParams({ model: 'nova-3', smart_format: 'true' });
  const url = `${listenUrl}?${params}`;
  try {
    if ($('client').value === 'sdk') {
      await openSDKSocket(s, url);
    } else {
      await openSocket(s, url);
    }
  } catch (err) {
    refused(s, err);
  }
}

// openSocket streams through client.js's connect, which keeps the
// credential's secret to itself but tells onCredential its lease ID and
// expiry before the socket opens; the key ID comes from GET
// /api/status/{lease_id} once it is open.
async function openSocket(s, url) {
  const ws = await connect({
    endpoint: ENDPOINT,
    url,
    onCredential: (info) => {
      if (!current(s)) return; // a newer session began: this one writes nothing
      s.leaseId = info.lease_id;
      issued(s, info.lease_id, '', new Date(info.expires));
    },
    onReleased: (ok) => released(s, ok),
  });
  s.socket = ws;
  ws.onmessage = (event) => onMessage(s, event);
  ws.onclose = (event) => closed(s, event);
  opened(s);
  describeLease(s);
}

// openSDKSocket streams with Deepgram's own browser SDK (loaded on first
// use), which needs the credential itself: it offers it as the
// subprotocols [scheme, secret, "x-deepgram-session-id", id]. The rest of
// the page sees the SDK's socket through the same small interface as a
// WebSocket.
async function openSDKSocket(s, url) {
  const opts = { endpoint: ENDPOINT };
  const cred = await credential(opts); // checks the answer holds a credential
  // The credential is released once: when the socket opens (the backend
  // deletes the key), or at once when it never will (a socket closed
  // before it opened, or an SDK that failed), as client.js's connect does.
  let releasing = null;
  const releaseOnce = () => (releasing ??= release(opts, cred.release));
  s.kind = cred.subprotocol[0];
  s.leaseId = cred.lease_id;
  issued(s, cred.lease_id, '', new Date(cred.expires));
  setState(s, "Opening the stream with Deepgram's browser SDK…");
  try {
    await loadScript('/static/deepgram-sdk.js');
    const [scheme, secret] = cred.subprotocol;
    const wsOrigin = new URL(url).origin;
    const httpOrigin = wsOrigin.replace(/^ws/, 'http');
    const client = new window.Deepgram.DeepgramClient({
      ...(scheme === 'bearer' ? { accessToken: secret } : { apiKey: secret }),
      environment: { base: httpOrigin, production: wsOrigin, agent: wsOrigin, agentRest: httpOrigin },
    });
    const sock = await client.listen.v1.connect({ model: 'nova-3', smart_format: 'true', reconnectAttempts: 0 });
    s.socket = {
      get readyState() { return sock.readyState; },
      send(data) {
        if (typeof data === 'string') sock.sendCloseStream({ type: 'CloseStream' });
        else sock.sendMedia(data);
      },
      close() { sock.close(); },
    };
    sock.on('open', () => {
      if (s.opened) return;
      opened(s);
      releaseOnce().then((ok) => released(s, ok));
    });
    sock.on('message', (msg) => onMessage(s, { data: JSON.stringify(msg) }));
    sock.on('close', (event) => {
      if (s.opened) {
        closed(s, event);
        return;
      }
      releaseOnce();
      refused(s, new CredentialError(`Deepgram closed the socket before it opened (code ${event?.code})`, 0, 0));
    });
    sock.connect();
  } catch (err) {
    releaseOnce();
    throw new Error(`Could not open the stream with Deepgram's SDK: ${err.message}`);
  }
}

function loadScript(src) {
  if (window.Deepgram) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const el = document.createElement('script');
    el.src = src;
    el.onload = resolve;
    el.onerror = () => reject(new Error(`${src} did not load`));
    document.head.append(el);
  });
}

// issued shows the credential: its lease, its key (API keys only), and
// when it ends by itself.
function issued(s, leaseId, keyId, ends) {
  const seconds = Math.max(0, Math.round((ends - Date.now()) / 1000));
  const names = keyId ? `${keyId}, lease ${leaseId}` : `lease ${leaseId}`;
  step(s, 'issued', `${capitalized(kindName(s.kind))} issued`,
    `(${names}): usage only, ends by itself at ${clock(ends)} ` +
    `(in ${seconds} s) unless released sooner.`, '', 'open');
}

// describeLease adds to the issued step what only the backend knows about
// the credential connect used: its key ID (API keys only).
async function describeLease(s) {
  const st = await getStatus(s);
  if (!st || !current(s)) return;
  issued(s, st.lease_id, st.key_id, new Date(st.ends));
}

function opened(s) {
  s.opened = true;
  step(s, 'open', 'Socket open.', `${listenUrl} accepted the ${kindName(s.kind)}.`, 'ok');
  setState(s, 'Streaming: speak now.');
  if (current(s)) stopButton.disabled = false;
  record(s);
}

// refused ends an attempt whose stream never opened: a refused credential
// (429: Start comes back after Retry-After, counted down on the button),
// a backend that fails or answers something else than a credential, or a
// socket Deepgram would not open.
function refused(s, err) {
  stopTracks(s.media);
  s.ended = true;
  if (err instanceof CredentialError && err.status === 429) {
    step(s, 'denied', 'Denied (429).', err.message, 'err');
    showError(s, err.message);
    setState(s, 'Stopped.');
    countdown(s, err.retryAfter || 1);
    return;
  }
  if (err instanceof CredentialError && err.status === 0) {
    step(s, 'refused', 'Socket refused.',
      `${capitalized(backend)} did not accept the credential: ${err.message}.`, 'err');
    fail(s, `The stream could not be opened: ${err.message}.`);
    return;
  }
  if (err instanceof CredentialError && err.status >= 200 && err.status < 300) { // a proxy's page, not a credential
    fail(s, 'The backend answered without a usable credential: is a proxy or captive portal in the way?');
    return;
  }
  if (err instanceof TypeError) { // fetch: no answer at all
    fail(s, `The backend is not answering: ${err.message}`);
    return;
  }
  fail(s, err.message);
}

// countdown keeps Start disabled for seconds, saying on it how long is
// left, and enables it at zero. It counts from a deadline, not in ticks: a
// background tab runs timers late, and a late tick shows the time really
// left (skipping what it slept through); it never enables Start early.
function countdown(s, seconds) {
  const until = Date.now() + seconds * 1000;
  const tick = () => {
    if (!current(s)) return;
    const ms = until - Date.now();
    const left = Math.ceil(ms / 1000);
    if (left <= 0) {
      startButton.textContent = START_LABEL;
      startButton.disabled = false;
      return;
    }
    startButton.textContent = `Try again in ${left} s`;
    // Wake when the label next changes: when left - 1 seconds are left.
    setTimeout(tick, ms - (left - 1) * 1000);
  };
  startButton.disabled = true;
  tick();
}

function closed(s, event) {
  if (s.ended) return;
  const code = event?.code;
  const why = event?.reason ? `: ${event.reason}` : '';
  if (s.stopping && code === 1000) {
    step(s, 'closed', 'Stream closed', `(code ${code}${why}).`);
    end(s, '');
  } else if (s.closedByPage) {
    step(s, 'closed', 'Stream closed by the page',
      `(code ${code}): ${backend} did not close it within ${CLOSE_WAIT_MS / 1000} s of CloseStream.`, 'warn');
    end(s, '');
  } else {
    // Nobody here asked for it: the server went away (1001), the
    // connection broke (1006), or Deepgram ended the stream.
    const text = `The server closed the stream (code ${code}${why}).`;
    step(s, 'closed', 'Stream closed by the server', `(code ${code}${why}).`, 'err');
    end(s, text);
  }
  showUsage(s);
}

// ---- usage ----------------------------------------------------------------

// getUsage returns the visitor's usage from the day from (YYYY-MM-DD;
// default today) to today, or null.
async function getUsage(from) {
  const query = from ? `?${new URLSearchParams({ from })}` : '';
  try {
    const res = await fetch(`/api/usage${query}`, { cache: 'no-store', credentials: 'same-origin' });
    return res.ok ? await res.json() : null;
  } catch {
    return null;
  }
}

function seconds(n) {
  return `${n.toFixed(1)} s`;
}

// showUsage reads the visitor's usage back after a stream and shows what
// the stream used: the backend counts it by the visitor's tag.
async function showUsage(s) {
  if (!usageAvailable) return;
  const before = s.usageBefore;
  // From the day of the first reading: a stream across midnight counts once.
  const after = await getUsage(before ? before.from : '');
  if (!after) {
    step(s, 'usage', 'Usage unavailable:', `could not read it back from ${backend}.`, 'warn');
    return;
  }
  if (!after.attributable) {
    step(s, 'usage', 'Usage not attributed:',
      `a grant token carries no tags, so ${backend} cannot tell whose stream it was.`, 'warn');
    return;
  }
  const used = before ? after.seconds - before.seconds : after.seconds;
  const streams = `${after.streams} stream${after.streams === 1 ? '' : 's'}`;
  const days = after.from === after.to ? `on ${after.to}` : `from ${after.from} to ${after.to}`;
  step(s, 'usage', `This stream used ${seconds(Math.max(0, used))} of audio`,
    `as ${after.source} counts it by your tag: ${seconds(after.seconds)} in ${streams} ${days} (UTC). ` +
    "Deepgram's own figures can lag behind a stream.", 'ok');
}

// ---- the credential's fate --------------------------------------------------

// released is told whether the backend was told the socket is open (it
// then deletes the key); then the status is polled to see it happen.
function released(s, ok) {
  if (!s.opened) return; // a socket that never opened: refused() said so
  if (!ok) {
    step(s, 'released', 'Release failed:',
      'the backend could not be told. The credential ends by itself at its TTL.', 'warn');
  } else if (s.kind === 'bearer') {
    step(s, 'released', 'Released.',
      'The backend ended the lease. A grant token cannot be deleted: it works until it expires.', 'warn');
  } else {
    step(s, 'released', 'Released.', `The backend ended the lease and asked ${backend} to delete the key.`, 'ok');
  }
  pollStatus(s);
}

// pollStatus keeps going after the stream ends, to show the credential's
// fate; it stops as soon as a newer session began.
async function pollStatus(s) {
  let expires = null;
  for (let i = 0; i < STATUS_POLLS; i++) {
    await sleep(STATUS_EVERY_MS);
    if (!current(s)) return;
    const st = await getStatus(s);
    if (!st || !current(s)) return;
    expires = new Date(st.expires);
    if (showStatus(s, st)) return;
  }
  if (!expires) return;
  // Not final yet: look once more after the credential's own expiry.
  const wait = expires - Date.now() + 1000;
  if (wait > 0 && wait < 5 * 60 * 1000) {
    await sleep(wait);
    if (!current(s)) return;
    const st = await getStatus(s);
    if (st && current(s)) showStatus(s, st);
  }
}

// getStatus returns the status of s's lease, or null (also while its ID
// is unknown). A 404 is said in the timeline (one line: step rewrites a
// line of the same name): with several copies of the demo behind one load
// balancer, only the copy that issued the credential knows it (each keeps
// its own ledger), and the status request may have reached another.
async function getStatus(s) {
  if (!s.leaseId) return null;
  try {
    const res = await fetch(`/api/status/${encodeURIComponent(s.leaseId)}`, { cache: 'no-store', credentials: 'same-origin' });
    if (res.status === 404) {
      step(s, 'status-unknown', 'Status unknown here.',
        'Status is only known to the copy of the demo that issued this credential.', 'warn');
    }
    const st = await res.json();
    return res.ok ? st : null;
  } catch {
    return null;
  }
}

// showStatus shows one status answer; it returns true once the answer is
// final (nothing more will change).
function showStatus(s, st) {
  switch (st.credential) {
    case 'deleted':
      s.deletedAt = s.deletedAt || Date.now();
      // Only a backend that can ask Deepgram (source "deepgram") says so.
      step(s, 'deleted', 'Key deleted.',
        `${capitalized(backend)} reports it gone: ` +
        `it can no longer open a stream.${s.ended ? '' : ' This stream keeps running.'}`, 'ok');
      return true;
    case 'expired':
      step(s, 'expired', 'Credential expired.', 'It can no longer open a stream.', 'ok');
      return true;
    case 'deletion requested':
      step(s, 'status', 'Deletion requested.',
        `Lease ${st.lease}; the backend deletes the key, retrying until it is gone (it expires on Deepgram at ${clock(new Date(st.expires))} regardless).`, 'ok');
      // Not final: the deletion may still fail, and the key expires.
      return false;
    case 'deletion failed':
      step(s, 'status', 'Deletion failed.',
        `The key still expires on Deepgram at ${clock(new Date(st.expires))}.`, 'warn');
      return true;
    default: // "active"
      if (st.source === 'token expiry') {
        step(s, 'status', 'Token still valid', `until ${clock(new Date(st.expires))}: ` +
          `a grant token only expires (lease ${st.lease}).`, 'warn');
      } else {
        step(s, 'status', 'Key still active', `(lease ${st.lease}).`);
      }
      return false;
  }
}

// ---- audio and transcript ---------------------------------------------------

function onMessage(s, event) {
  if (!current(s)) return;
  let msg;
  try {
    msg = JSON.parse(event.data);
  } catch {
    return;
  }
  if (msg.type !== 'Results') return;
  const text = msg.channel?.alternatives?.[0]?.transcript;
  if (!text) return;

  const box = $('transcript');
  box.querySelector('.placeholder')?.remove();
  let interim = box.querySelector('p.interim');
  if (msg.is_final) {
    interim?.remove();
    const p = document.createElement('p');
    p.className = 'final';
    p.textContent = text;
    box.append(p);
  } else {
    if (!interim) {
      interim = document.createElement('p');
      interim.className = 'interim';
      box.append(interim);
    }
    interim.textContent = text;
  }
  box.scrollTop = box.scrollHeight;

  if (s.deletedAt && msg.is_final) {
    s.afterDelete++;
    step(s, 'outlived', 'The stream outlives its key:',
      `${s.afterDelete} result${s.afterDelete === 1 ? '' : 's'} received since the key was deleted.`, 'ok');
  }
}

function record(s) {
  const types = ['audio/webm;codecs=opus', 'audio/webm', 'audio/ogg;codecs=opus'];
  const mimeType = types.find((t) => MediaRecorder.isTypeSupported(t));
  s.recorder = new MediaRecorder(s.media, mimeType ? { mimeType } : undefined);
  s.recorder.ondataavailable = (event) => {
    if (event.data.size > 0 && s.socket.readyState === WebSocket.OPEN) {
      s.socket.send(event.data);
    }
  };
  // Once the last chunk is sent, ask Deepgram to finish and close.
  s.recorder.onstop = () => closeStream(s);
  s.recorder.start(CHUNK_MS);
}

function stop() {
  const s = session;
  if (!s || s.ended || !s.opened) return;
  s.stopping = true;
  stopButton.disabled = true;
  setState(s, 'Finishing the stream…');
  if (s.recorder && s.recorder.state !== 'inactive') {
    s.recorder.stop(); // onstop sends CloseStream
  } else {
    closeStream(s);
  }
}

function closeStream(s) {
  stopTracks(s.media);
  if (s.socket && s.socket.readyState === WebSocket.OPEN) {
    s.socket.send(JSON.stringify({ type: 'CloseStream' }));
    // Deepgram closes the socket after its last results; don't wait forever.
    setTimeout(() => {
      if (s.ended) return;
      s.closedByPage = true;
      s.socket.close();
    }, CLOSE_WAIT_MS);
  }
}

function stopTracks(media) {
  media?.getTracks().forEach((track) => track.stop());
}

// end cleans up a stream that opened, however it ended.
function end(s, error) {
  s.ended = true;
  if (s.recorder && s.recorder.state !== 'inactive') {
    s.recorder.onstop = null;
    s.recorder.stop();
  }
  stopTracks(s.media);
  if (!current(s)) return;
  stopButton.disabled = true;
  startButton.disabled = false;
  setState(s, error ? 'Stopped.' : 'Done. Press Start to stream again.');
  if (error) showError(s, error);
}

// fail ends an attempt with an error, Start usable again.
function fail(s, message) {
  s.ended = true;
  stopTracks(s.media);
  showError(s, message);
  setState(s, 'Stopped.');
  if (current(s)) startButton.disabled = false;
}

startButton.addEventListener('click', start);
stopButton.addEventListener('click', stop);
loadAbout();
