package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/dglease/dglease/internal/browsertest"
	"github.com/dglease/dglease/internal/testenv"
	"github.com/dglease/dglease/keys/keystest"
)

// sdkBundle is the browser build of Deepgram's JavaScript SDK, as npm ci
// in internal/conformance installs it (pinned by its package-lock.json,
// never committed). It defines the global Deepgram.
var sdkBundle = filepath.Join("..", "..", filepath.FromSlash(defaultSDKBundle))

// sdkBundleOrSkip returns sdkBundle's path, or skips (fails with
// DGLEASE_REQUIRE_TOOLS=1, set by .ci/run, which installs it) when it is
// absent.
func sdkBundleOrSkip(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(sdkBundle); err != nil {
		testenv.Missing(t, "Deepgram's JavaScript SDK is not installed (run npm ci in internal/conformance; .ci/run does): skipping the official-SDK browser test")
	}
	return sdkBundle
}

// sdkTestPage streams the fake microphone with Deepgram's own browser SDK,
// unmodified, and the credential the demo's backend leases through
// leasehttp's client.js (credential and release, as a page that hands the
// credential to another client does): it opens the socket through the SDK
// (which offers [scheme, secret, "x-deepgram-session-id", uuid] as
// subprotocols), releases the credential once the socket is open (then
// lists li.released), and lists each final transcript as li.final
// (li.outlived once one arrives after the deletion). The test waits for
// the deletion on the server and then calls window.keyDeleted, which
// lists li.deleted.
const sdkTestPage = `<!doctype html>
<meta charset="utf-8">
<title>Deepgram's browser SDK against the fake</title>
<script src="/sdk-test/deepgram.js"></script>
<p id="ready">ready</p>
<p id="state">official SDK test page</p>
<p id="error"></p>
<ol id="timeline"></ol>
<script type="module">
import { credential, release } from '/api/deepgram/client.js';
const log = (cls, text) => {
  const li = document.createElement('li');
  li.className = cls;
  li.textContent = text;
  document.getElementById('timeline').append(li);
};
const opts = { endpoint: '/api/deepgram' };
const keyDeleted = new Promise((resolve) => { window.keyDeleted = resolve; });
async function run() {
  const about = await fetch('/api/about').then((r) => r.json());
  const cred = await credential(opts);
  const [scheme, secret] = cred.subprotocol;
  const wsOrigin = new URL(about.listen_url).origin;
  const client = new Deepgram.DeepgramClient({
    ...(scheme === 'bearer' ? { accessToken: secret } : { apiKey: secret }),
    environment: { base: location.origin, production: wsOrigin, agent: wsOrigin, agentRest: location.origin },
  });
  const media = await navigator.mediaDevices.getUserMedia({ audio: true });
  const socket = await client.listen.v1.connect({ model: 'nova-3', interim_results: 'true', reconnectAttempts: 0 });
  let deleted = false;
  socket.on('message', (m) => {
    if (m.type === 'Results' && m.is_final) {
      log(deleted ? 'final outlived' : 'final', m.channel.alternatives[0].transcript);
    }
  });
  socket.on('error', (e) => log('error', String((e && e.message) || e)));
  socket.connect();
  await socket.waitForOpen();
  log('open', 'socket open');
  const rec = new MediaRecorder(media);
  rec.ondataavailable = (ev) => { if (ev.data.size > 0) socket.sendMedia(ev.data); };
  rec.start(250);
  if (!await release(opts, cred.release)) throw new Error('release refused');
  log('released', 'credential released');
  await keyDeleted;
  deleted = true;
  log('deleted', 'key deleted');
}
run().catch((e) => log('error', String((e && e.message) || e)));
</script>
`

// TestOfficialBrowserSDKStreamsWithLeasedKey runs Deepgram's own browser
// SDK (the bundle npm installs, unmodified) in Chromium against the fake,
// with a key leased by the demo's backend: transcripts arrive, the key is
// deleted once the socket is open, and the stream outlives it.
func TestOfficialBrowserSDKStreamsWithLeasedKey(t *testing.T) {
	bundle := sdkBundleOrSkip(t)
	wrap := func(demo http.Handler) http.Handler {
		mux := http.NewServeMux()
		mux.Handle("/", demo)
		mux.HandleFunc("GET /sdk-test/{$}", func(w http.ResponseWriter, r *http.Request) {
			startSession(w, r) // as the demo's page does
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_, _ = w.Write([]byte(sdkTestPage))
		})
		mux.HandleFunc("GET /sdk-test/deepgram.js", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
			http.ServeFile(w, r, bundle)
		})
		return mux
	}
	e := startBrowserOn(t, wrap, "/sdk-test/", "#ready")
	e.b.Do(
		chromedp.WaitVisible(chromedp.CSS(`li.open`)),
		chromedp.WaitVisible(chromedp.CSS(`li.released`)),
	)
	// The lease ended with the release's answer; Flush waits for its
	// key's deletion. Then the page is told, and streams on.
	ctx, cancel := context.WithDeadline(e.b.Context(), e.b.Deadline())
	defer cancel()
	if err := e.s.leases.Flush(ctx); err != nil {
		t.Fatalf("waiting for the released key's deletion: %v\n%s", err, e.b.Describe())
	}
	e.deletedOnce()
	browsertest.Eval[bool](e.b, `(window.keyDeleted(), true)`)
	e.b.Do(
		chromedp.WaitVisible(chromedp.CSS(`li.final`)),
		chromedp.WaitVisible(chromedp.CSS(`li.deleted`)),
		chromedp.WaitVisible(chromedp.CSS(`li.outlived`)),
	)
	if n := e.count(`li.error`); n != 0 {
		t.Fatalf("the page logged %d errors: %s", n, e.text(`li.error`))
	}
	if got := e.text(`li.final`); got != "hello from the fake deepgram" {
		t.Errorf("first final transcript = %q, want the fake's first phrase", got)
	}
}

// count returns how many elements sel selects.
func (e *browserDemo) count(sel string) int {
	e.t.Helper()
	quoted, err := json.Marshal(sel)
	if err != nil {
		e.t.Fatal(err)
	}
	return browsertest.Eval[int](e.b, `document.querySelectorAll(`+string(quoted)+`).length`)
}

// TestDemoPageStreamsWithTheOfficialSDK uses the demo page's switch to
// stream with Deepgram's own browser SDK instead of the page's WebSocket:
// the same steps happen (the key is deleted once the socket is open, the
// stream outlives it, Stop closes it), through the client users already
// have.
func TestDemoPageStreamsWithTheOfficialSDK(t *testing.T) {
	bundle := sdkBundleOrSkip(t)
	e := startBrowserDemo(t, func(c *config) { c.SDKBundle = bundle })
	if n := e.count(`#client option[value="sdk"]:enabled`); n != 1 {
		t.Fatal("the page does not offer the SDK though the backend serves it")
	}
	e.b.Do(
		chromedp.SetValue(`#client`, "sdk"),
		chromedp.Click(chromedp.ID("start")),
		chromedp.WaitVisible(chromedp.CSS(`#transcript p.final`)),
		chromedp.WaitVisible(chromedp.CSS(`li[data-step="deleted"]`)),
		chromedp.WaitVisible(chromedp.CSS(`li[data-step="outlived"]`)),
		chromedp.Click(chromedp.ID("stop")),
		chromedp.WaitVisible(chromedp.CSS(`li[data-step="closed"]`)),
	)
	if n := e.count(`li[data-step="closed"].err, #error:not([hidden])`); n != 0 {
		t.Errorf("Stop ended the stream with an error: %s", e.b.Describe())
	}
	if got := e.text(`#transcript p.final`); got != "hello from the fake deepgram" {
		t.Errorf("first final transcript = %q, want the fake's first phrase", got)
	}
	e.deletedOnce()
}

// Without the bundle the page offers only its own WebSocket.
func TestDemoPageWithoutTheSDK(t *testing.T) {
	e := startBrowserDemo(t)
	if n := e.count(`#client option[value="sdk"]:disabled`); n != 1 {
		t.Error("the SDK option is enabled though no bundle is served")
	}
}

// TestDemoPageSDKReleasesARefusedCredential: when the socket the SDK opens
// is refused (here by a listen endpoint that answers every handshake 401),
// the page says so and releases the credential at once, as client.js's
// connect does, rather than leaving the key live until its TTL.
func TestDemoPageSDKReleasesARefusedCredential(t *testing.T) {
	bundle := sdkBundleOrSkip(t)
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "refused", http.StatusUnauthorized)
	}))
	t.Cleanup(refuse.Close)
	var releases atomic.Int32
	released := make(chan struct{}, 1)
	wrap := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(w, r)
			if r.Method == http.MethodPost && r.URL.Path == releasePath {
				releases.Add(1)
				select {
				case released <- struct{}{}:
				default:
				}
			}
		})
	}
	// Once: the SDK reports its socket's close more than once, each a
	// chance to release again (the demo's guard releases once). Counted
	// after the browser has stopped (cleanups run last first), when no
	// later release can still come.
	t.Cleanup(func() {
		if n := releases.Load(); n != 1 {
			t.Errorf("%d POST %s, want 1", n, releasePath)
		}
	})
	e := startBrowserOn(t, wrap, "/", `#about code`, func(c *config) {
		c.SDKBundle = bundle
		c.ListenURL = "ws" + strings.TrimPrefix(refuse.URL, "http") + "/v1/listen"
	})
	e.b.Do(
		chromedp.SetValue(`#client`, "sdk"),
		chromedp.Click(chromedp.ID("start")),
		chromedp.WaitVisible(chromedp.CSS(`li[data-step="refused"]`)),
		chromedp.WaitEnabled(chromedp.ID("start")),
	)
	created := e.created()
	if len(created) != 1 {
		t.Fatalf("%d keys created, want 1", len(created))
	}
	id := created[0].Key.ID
	// The page's release, answered; then the deletion it started.
	select {
	case <-released:
	case <-e.b.Context().Done():
		t.Fatalf("the page never released the refused credential\n%s", e.b.Describe())
	}
	if err := e.s.leases.Flush(e.b.Context()); err != nil {
		t.Fatal(err)
	}
	if st, _ := e.fake.Key(id); st.Status != keystest.StatusDeleted {
		t.Errorf("the refused credential's key is %q after its release, want deleted", st.Status)
	}
}
