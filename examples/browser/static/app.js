// The demo page: stream the microphone to Deepgram with a credential leased
// by the backend, and show each step of the credential's life.
//
//   1. POST /api/credential             -> {subprotocol, expires, lease_id, key_id, listen_url}
//   2. new WebSocket(listen_url, subprotocol)   (browsers cannot set headers)
//   3. socket open -> POST /api/release {lease_id}  (the backend deletes the key)
//   4. GET /api/credential/{lease_id}/status, a few times, to see it deleted
//   5. MediaRecorder chunks every 250 ms -> socket; Results -> transcript
//   6. Stop -> {"type": "CloseStream"}
//   7. GET /api/usage before and after the stream: the audio it used, as
//      Deepgram counts it by the visitor's tag
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const startButton = $('start');
  const stopButton = $('stop');

  // Every POST carries this header: a cross-site form cannot.
  const apiHeaders = {
    'Content-Type': 'application/json',
    'X-Requested-With': 'dglease-demo',
  };

  const CHUNK_MS = 250;       // MediaRecorder timeslice
  const STATUS_POLLS = 10;    // status checks after release
  const STATUS_EVERY_MS = 500;

  let session = null;  // the latest stream, see start()
  let backend = 'Deepgram'; // its name, from /api/about
  let usageAvailable = false; // whether /api/usage can read usage back

  // ---- page helpers -------------------------------------------------------

  function setState(text) {
    $('state').textContent = text;
  }

  function showError(text) {
    const el = $('error');
    el.textContent = text;
    el.hidden = !text;
  }

  function clock(date) {
    return date.toLocaleTimeString([], { hour12: false });
  }

  // step adds (or, for a step name already shown, updates) one line of the
  // timeline. tone is "ok", "warn", "err" or "".
  function step(name, title, detail, tone = '') {
    const list = $('timeline');
    list.querySelector('.placeholder')?.remove();
    let li = list.querySelector(`li[data-step="${name}"]`);
    if (!li) {
      li = document.createElement('li');
      li.dataset.step = name;
      list.append(li);
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
    showError('');
    $('timeline').replaceChildren();
    const nothing = document.createElement('p');
    nothing.className = 'placeholder';
    nothing.textContent = 'Listening…';
    $('transcript').replaceChildren(nothing);
  }

  function kindName(kind) {
    return kind === 'bearer' ? 'grant token' : 'API key';
  }

  function capitalized(text) {
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // ---- backend calls ------------------------------------------------------

  async function post(path, body) {
    const res = await fetch(path, {
      method: 'POST',
      headers: apiHeaders,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
    const data = await res.json().catch(() => ({}));
    return { res, data };
  }

  async function loadAbout() {
    try {
      const res = await fetch('/api/about', { cache: 'no-store' });
      const about = await res.json();
      backend = about.backend;
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
    } catch (err) {
      console.error(err);
      $('about').textContent = 'The backend is not answering.';
    }
  }

  // ---- the stream ---------------------------------------------------------

  async function start() {
    startButton.disabled = true;
    resetPage();

    // Ask for the microphone first: a permission prompt can take longer
    // than the credential lives.
    setState('Asking for the microphone…');
    let media;
    try {
      media = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (err) {
      fail(`No microphone: ${err.message}`);
      return;
    }
    step('mic', 'Microphone allowed.');
    // The visitor's usage so far today, to show what this stream adds.
    const usageBefore = usageAvailable ? await getUsage() : null;

    setState('Asking the backend for a credential…');
    let answer;
    try {
      answer = await post('/api/credential');
    } catch (err) {
      stopTracks(media);
      fail(`The backend is not answering: ${err.message}`);
      return;
    }
    const { res, data } = answer;
    if (res.status === 429) {
      stopTracks(media);
      const wait = Number(res.headers.get('Retry-After')) || 1;
      step('denied', 'Denied (429).', data.error || '', 'err');
      fail(data.error || `Too many requests: try again in ${wait} s.`);
      startButton.disabled = true;
      setTimeout(() => { startButton.disabled = false; }, wait * 1000);
      return;
    }
    if (!res.ok) {
      stopTracks(media);
      fail(data.error || `The backend answered ${res.status}.`);
      return;
    }

    const cred = data;
    if (!Array.isArray(cred.subprotocol) || cred.subprotocol.length !== 2 || !cred.listen_url) {
      // A proxy that rewrote the answer: say so rather than stall with the
      // microphone open.
      stopTracks(media);
      fail('The backend answered without a usable credential.');
      return;
    }
    const kind = cred.subprotocol[0]; // "token" (API key) or "bearer" (grant token)
    const expires = new Date(cred.expires);
    const seconds = Math.max(0, Math.round((expires - Date.now()) / 1000));
    const names = cred.key_id ? `${cred.key_id}, lease ${cred.lease_id}` : `lease ${cred.lease_id}`;
    step('issued', `${capitalized(kindName(kind))} issued`,
      `(${names}): usage only, ends by itself at ` +
      `${clock(expires)} (in ${seconds} s) unless released sooner.`);

    session = {
      ended: false,
      cred: { kind, leaseId: cred.lease_id, listenUrl: cred.listen_url },
      media,
      socket: null,
      recorder: null,
      opened: false,
      released: false,
      deletedAt: null,   // when the status said the key is gone
      afterDelete: 0,    // results received since then
      usageBefore,       // GET /api/usage before the stream, or null
    };
    if ($('client').value === 'sdk') {
      openSDKSocket(session, cred.subprotocol);
    } else {
      openSocket(session, cred.subprotocol);
    }
  }

  function openSocket(s, subprotocol) {
    const params = new URLSearchParams({ model: 'nova-3', smart_format: 'true' });
    const url = `${s.cred.listenUrl}?${params}`;
    setState('Opening the stream…');
    try {
      // The credential travels as the subprotocol list the backend sent:
      // ["token", key] or ["bearer", jwt]. The page keeps no other copy.
      s.socket = new WebSocket(url, subprotocol);
    } catch (err) {
      release(s);
      end(s, `Could not open the socket: ${err.message}`);
      return;
    }

    s.socket.onopen = () => opened(s);
    s.socket.onmessage = (event) => onMessage(s, event);
    s.socket.onclose = (event) => closed(s, event);
  }

  // openSDKSocket opens the stream with Deepgram's own browser SDK
  // (loaded on first use), which offers the credential as the subprotocols
  // [scheme, secret, "x-deepgram-session-id", id]; the rest of the page
  // sees it through the same small interface as a WebSocket.
  async function openSDKSocket(s, subprotocol) {
    setState("Opening the stream with Deepgram's browser SDK…");
    try {
      await loadScript('/static/deepgram-sdk.js');
      const [scheme, secret] = subprotocol;
      const wsOrigin = s.cred.listenUrl.replace(/\/v1\/listen$/, '');
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
      sock.on('open', () => opened(s));
      sock.on('message', (msg) => onMessage(s, { data: JSON.stringify(msg) }));
      sock.on('close', (event) => closed(s, event));
      sock.connect();
    } catch (err) {
      release(s);
      end(s, `Could not open the stream with Deepgram's SDK: ${err.message}`);
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

  function opened(s) {
    if (s.opened) return;
    s.opened = true;
    step('open', 'Socket open.', `${s.cred.listenUrl} accepted the ${kindName(s.cred.kind)}.`, 'ok');
    setState('Streaming: speak now.');
    stopButton.disabled = false;
    release(s); // the socket is open: the credential is no longer needed
    record(s);
  }

  function closed(s, event) {
    if (s.ended) return;
    if (!s.opened) {
      step('refused', 'Socket refused.',
        `${capitalized(backend)} did not accept the credential (see the browser console).`, 'err');
      release(s);
      end(s, 'The stream could not be opened.');
      return;
    }
    const why = event?.reason ? `: ${event.reason}` : '';
    step('closed', 'Stream closed', `(code ${event?.code}${why}).`);
    end(s, '');
    showUsage(s);
  }

  // ---- usage --------------------------------------------------------------

  // getUsage returns the visitor's usage from the day from (YYYY-MM-DD;
  // default today) to today, or null.
  async function getUsage(from) {
    const query = from ? `?${new URLSearchParams({ from })}` : '';
    try {
      const res = await fetch(`/api/usage${query}`, { cache: 'no-store', credentials: 'same-origin' });
      return res.ok ? await res.json() : null;
    } catch (err) {
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
    if (s !== session) return;
    if (!after) {
      step('usage', 'Usage unavailable:', `could not read it back from ${backend}.`, 'warn');
      return;
    }
    if (!after.attributable) {
      step('usage', 'Usage not attributed:',
        `a grant token carries no tags, so ${backend} cannot tell whose stream it was.`, 'warn');
      return;
    }
    const used = before ? after.seconds - before.seconds : after.seconds;
    const streams = `${after.streams} stream${after.streams === 1 ? '' : 's'}`;
    const days = after.from === after.to ? `on ${after.to}` : `from ${after.from} to ${after.to}`;
    step('usage', `This stream used ${seconds(Math.max(0, used))} of audio`,
      `as ${after.source} counts it by your tag: ${seconds(after.seconds)} in ${streams} ${days} (UTC). ` +
      "Deepgram's own figures can lag behind a stream.", 'ok');
  }

  // release tells the backend to end the lease now; the backend's deleter
  // deletes the key. Then the status is polled to see it happen.
  async function release(s) {
    if (s.released || s !== session) return;
    s.released = true;
    let answer;
    try {
      answer = await post('/api/release', { lease_id: s.cred.leaseId });
    } catch (err) {
      step('released', 'Release failed:', `${err.message}. The credential ends by itself at its TTL.`, 'warn');
      return;
    }
    const { res, data } = answer;
    if (!res.ok) {
      step('released', 'Release failed:', `${data.error || res.status}. The credential ends by itself at its TTL.`, 'warn');
      return;
    }
    if (data.revocable) {
      step('released', 'Released.', `The backend ended the lease and asked ${backend} to delete the key.`, 'ok');
    } else {
      step('released', 'Released.',
        `The backend ended the lease. A grant token cannot be deleted: it stops working at ${clock(new Date(data.expires))}.`, 'warn');
    }
    pollStatus(s, new Date(data.expires));
  }

  // pollStatus keeps going after the stream ends, to show the credential's
  // fate; it stops when a new stream starts.
  async function pollStatus(s, expires) {
    for (let i = 0; i < STATUS_POLLS; i++) {
      await sleep(STATUS_EVERY_MS);
      const st = await getStatus(s);
      if (!st || s !== session) return;
      if (showStatus(s, st)) return;
    }
    // Not final yet: look once more after the credential's own expiry.
    const wait = expires - Date.now() + 1000;
    if (wait > 0 && wait < 5 * 60 * 1000) {
      await sleep(wait);
      const st = await getStatus(s);
      if (st && s === session) showStatus(s, st);
    }
  }

  async function getStatus(s) {
    try {
      const res = await fetch(`/api/credential/${encodeURIComponent(s.cred.leaseId)}/status`,
        { cache: 'no-store', credentials: 'same-origin' });
      return res.ok ? await res.json() : null;
    } catch (err) {
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
        step('deleted', 'Key deleted.',
          `${capitalized(backend)} reports it gone: ` +
          'it can no longer open a stream. This stream keeps running.', 'ok');
        return true;
      case 'expired':
        step('expired', 'Credential expired.', 'It can no longer open a stream.', 'ok');
        return true;
      case 'deletion requested':
        step('status', 'Deletion requested.',
          `Lease ${st.lease}; the backend deletes the key, retrying until it is gone (it expires on Deepgram at ${clock(new Date(st.expires))} regardless).`, 'ok');
        // Not final: the deletion may still fail, and the key expires.
        return false;
      case 'deletion failed':
        step('status', 'Deletion failed.',
          `The key still expires on Deepgram at ${clock(new Date(st.expires))}.`, 'warn');
        return true;
      default: // "active"
        if (st.source === 'token expiry') {
          step('status', 'Token still valid', `until ${clock(new Date(st.expires))}: ` +
            `a grant token only expires (lease ${st.lease}).`, 'warn');
        } else {
          step('status', 'Key still active', `(lease ${st.lease}).`);
        }
        return false;
    }
  }

  function onMessage(s, event) {
    let msg;
    try {
      msg = JSON.parse(event.data);
    } catch (err) {
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
      step('outlived', 'The stream outlives its key:',
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
    if (!s || s.ended) return;
    stopButton.disabled = true;
    setState('Finishing the stream…');
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
      setTimeout(() => s.socket.close(), 5000);
    }
  }

  function stopTracks(media) {
    media?.getTracks().forEach((track) => track.stop());
  }

  // end cleans up a stream, however it ended.
  function end(s, error) {
    s.ended = true;
    if (s.recorder && s.recorder.state !== 'inactive') {
      s.recorder.onstop = null;
      s.recorder.stop();
    }
    stopTracks(s.media);
    stopButton.disabled = true;
    startButton.disabled = false;
    setState(error ? 'Stopped.' : 'Done. Press Start to stream again.');
    if (error) showError(error);
  }

  function fail(message) {
    showError(message);
    setState('Stopped.');
    startButton.disabled = false;
  }

  startButton.addEventListener('click', start);
  stopButton.addEventListener('click', stop);
  loadAbout();
})();
