package leasehttp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/dglease/dglease/internal/browsertest"
	"github.com/dglease/dglease/internal/testaudio"
	"github.com/dglease/dglease/keys/keystest"
	"github.com/dglease/dglease/lease"
	"github.com/dglease/dglease/lease/leasehttp"
)

// These tests load client.js in a real, headless Chromium: the browser's
// fetch, CORS, Sec-Fetch-Site and WebSocket subprotocols are the point, so
// nothing here is simulated but Deepgram (keys/keystest's fake, listening
// on a loopback port).

// browserPageHTML is the test page: it imports client.js from
// BROWSER_MODULE and gives the tests a few functions to call with
// chromedp; #status says "ready" once the module is loaded.
const browserPageHTML = `<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>leasehttp browser test</title>
<p id="status">loading</p>
<script type="module">
const status = document.getElementById('status');
let dg;
try {
  dg = await import(BROWSER_MODULE);
} catch (err) {
  status.textContent = 'import failed: ' + err;
  throw err;
}
const sockets = [];

// tryConnect calls connect and, once the socket is open, waits until
// client.js has reported it to /release. It never rejects: a rejection is
// returned as a value, with what the page can see of the error.
window.tryConnect = async (opts) => {
  let released;
  const releasedP = new Promise((resolve) => { released = resolve; });
  let info = null;
  try {
    const ws = await dg.connect({ ...opts, onReleased: released, onCredential: (i) => { info = i; } });
    sockets.push(ws);
    const ok = await releasedP;
    console.log('connected; release reported:', ok);
    return { ok: true, socket: sockets.length - 1, released: ok, info };
  } catch (err) {
    console.log('connect rejected:', String(err));
    return {
      ok: false,
      name: String(err && err.name),
      message: String(err && err.message),
      status: (err && err.status) || 0,
      retryAfter: (err && err.retryAfter) || 0,
      credentialError: err instanceof dg.CredentialError,
    };
  }
};

// transcribe sends frames 100 ms frames of the test clip on socket i,
// waits for a final Results per frame, then ends the stream with
// CloseStream and waits for the socket to close.
window.transcribe = async (i, frames) => {
  const ws = sockets[i];
  const pcm = new Uint8Array(await (await fetch('/audio.pcm')).arrayBuffer());
  const frame = 3200; // 100 ms of 16 kHz 16-bit mono
  const finals = [];
  const got = new Promise((resolve, reject) => {
    ws.addEventListener('message', (e) => {
      const m = JSON.parse(e.data);
      if (m.type === 'Results' && m.is_final) {
        finals.push(m.channel.alternatives[0].transcript);
        if (finals.length === frames) resolve();
      }
    });
    ws.addEventListener('close', (e) => reject(new Error('socket closed (code ' + e.code + ') after ' + finals.length + ' final results')));
  });
  for (let k = 0; k < frames; k++) ws.send(pcm.subarray(k * frame, (k + 1) * frame));
  await got;
  console.log('transcripts:', finals.join(' | '));
  const closed = new Promise((resolve) => ws.addEventListener('close', (e) => resolve(e.code)));
  ws.send(JSON.stringify({ type: 'CloseStream' }));
  return { finals, code: await closed };
};

// postNoCORS is what any page may do without CORS: a "simple" POST that
// needs no preflight, whose answer the page cannot read.
window.postNoCORS = async (url) => {
  try {
    const res = await fetch(url, { method: 'POST', mode: 'no-cors', body: '{}' });
    return res.type;
  } catch (err) {
    return 'error: ' + err;
  }
};

status.textContent = 'ready';
</script>
</html>
`

// browserUser is every test request's user: the page sends no cookie.
func browserUser(*http.Request) (string, error) { return "page-user", nil }

// browserListenQuery is the raw audio format of testaudio's clip.
var browserListenQuery = fmt.Sprintf("?encoding=%s&sample_rate=%d&channels=%d", testaudio.Encoding, testaudio.SampleRate, testaudio.Channels)

// browserSite is an httptest.Server serving the test page, the test clip
// and Handlers (mounted with mount) on one lease.Manager, over a listening
// fake Deepgram.
type browserSite struct {
	t    *testing.T
	fake *keystest.Server
	keys *browsertest.SecretRecorder
	m    *lease.Manager
	mux  *http.ServeMux
	ts   *httptest.Server
	log  *browserRequests
}

// newBrowserSite starts a site whose page imports module (a path or URL of
// client.js). Its leases live a minute unless mopts say otherwise, longer
// than any test: a key deleted during one was released, not expired.
func newBrowserSite(t *testing.T, module string, mopts ...lease.Option) *browserSite {
	t.Helper()
	fake := keystest.NewServer(t)
	rec := &browsertest.SecretRecorder{KeyService: fake.Client()}
	m, err := lease.New(rec, append([]lease.Option{lease.WithTTL(time.Minute)}, mopts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			t.Errorf("Manager.Close: %v", err)
		}
	})
	s := &browserSite{t: t, fake: fake, keys: rec, m: m, mux: browserPageMux(module), log: &browserRequests{}}
	s.ts = httptest.NewServer(s.mux)
	t.Cleanup(s.ts.Close)
	return s
}

// browserPageMux serves the page (importing module) at / and the test
// clip at /audio.pcm.
func browserPageMux(module string) *http.ServeMux {
	js, _ := json.Marshal(module)
	page := strings.Replace(browserPageHTML, "BROWSER_MODULE", string(js), 1)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, page)
	})
	pcm := testaudio.PCM()
	mux.HandleFunc("GET /audio.pcm", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(pcm)
	})
	return mux
}

// mount serves a Handler built with opts under prefix, logging its
// requests in s.log.
func (s *browserSite) mount(prefix string, opts ...leasehttp.Option) {
	s.t.Helper()
	h, err := leasehttp.New(s.m, browserUser, opts...)
	if err != nil {
		s.t.Fatal(err)
	}
	s.mux.Handle(prefix+"/", s.log.wrap(http.StripPrefix(prefix, h)))
}

// created returns the keys created on the fake, the admin key aside.
func (s *browserSite) created() []keystest.KeyState {
	var out []keystest.KeyState
	for _, k := range s.fake.Keys() {
		if k.Key.ID != s.fake.AdminKeyID() {
			out = append(out, k)
		}
	}
	return out
}

// flush waits until every released lease's key is deleted on the fake.
func (s *browserSite) flush() {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.m.Flush(ctx); err != nil {
		s.t.Fatalf("Manager.Flush: %v", err)
	}
}

// checkDeleted checks that exactly one key was created and that it is
// deleted, once.
func (s *browserSite) checkDeleted() keystest.KeyState {
	s.t.Helper()
	created := s.created()
	if len(created) != 1 {
		s.t.Fatalf("%d keys created on the fake, want 1", len(created))
	}
	s.flush()
	st, ok := s.fake.Key(created[0].Key.ID)
	if !ok || st.Status != keystest.StatusDeleted || st.Deletes != 1 {
		s.t.Errorf("key %s is %q with %d deletes (known to the fake: %t), want deleted once, the socket being open", st.Key.ID, st.Status, st.Deletes, ok)
	}
	return st
}

// browserPage is a page loaded in a fresh Chromium.
type browserPage struct {
	t *testing.T
	b *browsertest.Browser
}

// openBrowserPage starts Chromium and loads the test page at url.
func openBrowserPage(t *testing.T, url string) *browserPage {
	t.Helper()
	b := browsertest.Start(t)
	b.ShowOnFailure(`document.getElementById('status') && document.getElementById('status').textContent`)
	b.Do(chromedp.Navigate(url))
	status := browsertest.Run(b, chromedp.Poll[string](
		`(() => { const s = document.getElementById('status').textContent; return s !== 'loading' && s; })()`,
		chromedp.WithPollingMutation(), chromedp.WithPollingTimeout(0)))
	if status != "ready" {
		t.Fatalf("page status %q, want ready\n%s", status, b.Describe())
	}
	return &browserPage{t: t, b: b}
}

// browserConnect is what tryConnect returns.
type browserConnect struct {
	OK              bool    `json:"ok"`
	Socket          int     `json:"socket"`
	Released        bool    `json:"released"`
	Name            string  `json:"name"`
	Message         string  `json:"message"`
	Status          int     `json:"status"`
	RetryAfter      float64 `json:"retryAfter"`
	CredentialError bool    `json:"credentialError"`
	// Info is what onCredential was given.
	Info map[string]any `json:"info"`
}

// connect calls client.js's connect in the page, with the fake's
// /v1/listen URL, and waits until the release is reported too.
func (p *browserPage) connect(endpoint string, fake *keystest.Server) browserConnect {
	p.t.Helper()
	opts, err := json.Marshal(map[string]string{"endpoint": endpoint, "url": fake.ListenURL() + browserListenQuery})
	if err != nil {
		p.t.Fatal(err)
	}
	return browsertest.Eval[browserConnect](p.b, "tryConnect("+string(opts)+")")
}

// browserTranscript is what transcribe returns.
type browserTranscript struct {
	Finals []string `json:"finals"`
	Code   int      `json:"code"`
}

// transcribe streams frames 100 ms frames on the page's socket i.
func (p *browserPage) transcribe(i, frames int) browserTranscript {
	p.t.Helper()
	return browsertest.Eval[browserTranscript](p.b, fmt.Sprintf("transcribe(%d, %d)", i, frames))
}

// checkTranscript checks that each of frames frames got a final Results
// with a transcript, and that the stream ended normally after CloseStream.
func (p *browserPage) checkTranscript(tr browserTranscript, frames int) {
	p.t.Helper()
	if len(tr.Finals) != frames || slices.Contains(tr.Finals, "") || tr.Code != 1000 {
		p.t.Errorf("transcribe: %d final results %q, close code %d; want %d non-empty, then 1000", len(tr.Finals), tr.Finals, tr.Code, frames)
	}
}

// checkNoSecret checks that no credential issued reached the console or
// the page's text.
func (p *browserPage) checkNoSecret(k *browsertest.SecretRecorder) {
	p.t.Helper()
	secrets := k.Secrets()
	if len(secrets) == 0 {
		p.t.Fatal("no secret was issued: nothing to look for")
	}
	p.b.CheckNoSecret(secrets...)
}

// TestBrowserConnectStreamsAndKeyIsDeleted: a same-origin page imports
// client.js, connects, and the key is deleted once the socket is open; the
// socket, opened with it, still streams audio and gets transcripts.
func TestBrowserConnectStreamsAndKeyIsDeleted(t *testing.T) {
	s := newBrowserSite(t, "/dg/client.js")
	s.mount("/dg")
	p := openBrowserPage(t, s.ts.URL+"/")

	c := p.connect("/dg", s.fake)
	if !c.OK || !c.Released {
		t.Fatalf("connect = %+v, want an open socket, its release reported\n%s", c, p.b.Describe())
	}
	key := s.checkDeleted()
	if !strings.Contains(key.Key.Comment, fmt.Sprint(c.Info["lease_id"])) || c.Info["revocable"] != true || c.Info["expires"] == nil || len(c.Info) != 3 {
		t.Errorf("onCredential got %v, want lease_id (of key %q), expires and revocable, and no secret", c.Info, key.Key.Comment)
	}

	// The stream outlives its key, as Deepgram checks a credential only
	// when the socket opens.
	const frames = 5
	p.checkTranscript(p.transcribe(c.Socket, frames), frames)
	streams := s.fake.Streams()
	if len(streams) != 1 || streams[0].Accessor != key.Key.ID || streams[0].Audio != frames*100*time.Millisecond {
		t.Errorf("the fake recorded streams %+v, want one of key %s with %d ms of audio", streams, key.Key.ID, frames*100)
	}
	s.log.check(t,
		"GET /dg/client.js 200",
		"POST /dg/credential 200",
		"POST /dg/release 204",
	)
	p.checkNoSecret(s.keys)
}

// TestBrowserCrossOriginNeedsAllowedOrigin: a page on another origin gets
// no credential from a Handler that does not allow its origin, neither
// through client.js (its preflight is refused) nor with a no-cors POST
// (http.CrossOriginProtection refuses it before anything is minted); a
// Handler with WithAllowedOrigins for that origin serves the same page.
func TestBrowserCrossOriginNeedsAllowedOrigin(t *testing.T) {
	// The other origin: 127.0.0.1 on another port, serving its own copy of
	// client.js (a module from the API's origin would need CORS itself).
	other := httptest.NewUnstartedServer(nil) // listening already: its origin is known
	t.Cleanup(other.Close)
	otherOrigin := "http://" + other.Listener.Addr().String()
	s := newBrowserSite(t, "/dg/client.js") // its own page is not used here
	s.mount("/dg")
	s.mount("/dg-allowed", leasehttp.WithAllowedOrigins(otherOrigin))
	res, err := http.Get(s.ts.URL + "/dg/client.js")
	if err != nil {
		t.Fatal(err)
	}
	clientJS, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET client.js: %d, %v", res.StatusCode, err)
	}
	pageMux := browserPageMux("/client.js")
	pageMux.HandleFunc("GET /client.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		_, _ = w.Write(clientJS)
	})
	other.Config.Handler = pageMux
	other.Start()

	p := openBrowserPage(t, otherOrigin+"/")

	c := p.connect(s.ts.URL+"/dg", s.fake)
	if c.OK {
		t.Fatalf("connect from origin %s to a Handler that does not allow it = %+v, want a rejection", otherOrigin, c)
	}
	t.Logf("connect from a disallowed origin rejected: %s: %s", c.Name, c.Message)
	if typ := browsertest.Eval[string](p.b, fmt.Sprintf("postNoCORS(%q)", s.ts.URL+"/dg/credential")); typ != "opaque" {
		t.Errorf("no-cors POST: %s, want an opaque answer", typ)
	}
	if n := len(s.created()); n != 0 {
		t.Fatalf("%d keys created for a disallowed origin, want none", n)
	}
	if n := s.m.Stats().Acquired; n != 0 {
		t.Errorf("Stats.Acquired = %d for a disallowed origin, want 0", n)
	}
	// The preflight is refused, so client.js's POST is never sent; the
	// no-cors POST needs none, and the Handler refuses it.
	s.log.check(t,
		"GET /dg/client.js 200", // the other origin's copy, by the test
		"OPTIONS /dg/credential 403",
		"POST /dg/credential 403",
	)

	c = p.connect(s.ts.URL+"/dg-allowed", s.fake)
	if !c.OK || !c.Released {
		t.Fatalf("connect from an allowed origin = %+v, want an open socket, its release reported\n%s", c, p.b.Describe())
	}
	s.checkDeleted()
	p.checkTranscript(p.transcribe(c.Socket, 1), 1)
	s.log.check(t,
		"GET /dg/client.js 200",
		"OPTIONS /dg/credential 403",
		"POST /dg/credential 403",
		"OPTIONS /dg-allowed/credential 204",
		"POST /dg-allowed/credential 200",
		"OPTIONS /dg-allowed/release 204",
		"POST /dg-allowed/release 204",
	)
	p.checkNoSecret(s.keys)
}

// TestBrowserRateLimitRejectsWithRetryAfter: over the Manager's rate limit,
// connect rejects with a CredentialError carrying the 429 and the
// Retry-After the Handler sent, in whole seconds, and nothing is minted.
func TestBrowserRateLimitRejectsWithRetryAfter(t *testing.T) {
	const every = time.Minute
	s := newBrowserSite(t, "/dg/client.js", lease.WithRateLimit(every, 1))
	s.mount("/dg")
	p := openBrowserPage(t, s.ts.URL+"/")

	start := time.Now()
	if c := p.connect("/dg", s.fake); !c.OK {
		t.Fatalf("first connect = %+v, want an open socket\n%s", c, p.b.Describe())
	}
	c := p.connect("/dg", s.fake)
	elapsed := time.Since(start)
	if c.OK || c.Name != "CredentialError" || !c.CredentialError || c.Status != http.StatusTooManyRequests {
		t.Fatalf("second connect = %+v, want a CredentialError with status 429", c)
	}
	// The token comes back every after the first Acquire, which was
	// within elapsed before the refusal: rounded up, Retry-After is
	// between that and every.
	low := int(math.Ceil((every - elapsed).Seconds()))
	if c.RetryAfter != math.Trunc(c.RetryAfter) || int(c.RetryAfter) < low || int(c.RetryAfter) > int(every.Seconds()) {
		t.Errorf("err.retryAfter = %v, want a whole number of seconds from %d to %d", c.RetryAfter, low, int(every.Seconds()))
	}
	s.log.check(t,
		"GET /dg/client.js 200",
		"POST /dg/credential 200",
		"POST /dg/release 204",
		fmt.Sprintf("POST /dg/credential 429 Retry-After: %d", int(c.RetryAfter)),
	)
	if n := len(s.created()); n != 1 {
		t.Errorf("%d keys created, want 1: the refusal mints nothing", n)
	}
	p.checkNoSecret(s.keys)
}

// browserRequests logs the requests a Handler answered, as "METHOD /path
// status" (with the Retry-After header when there is one), in the order
// their status was written: a line is in the log before the client can see
// the answer.
type browserRequests struct {
	mu    sync.Mutex
	lines []string
}

func (l *browserRequests) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(&browserStatusWriter{ResponseWriter: w, log: l, what: r.Method + " " + r.URL.Path}, r)
	})
}

// check checks the log against want, in order.
func (l *browserRequests) check(t *testing.T, want ...string) {
	t.Helper()
	l.mu.Lock()
	got := slices.Clone(l.lines)
	l.mu.Unlock()
	if !slices.Equal(got, want) {
		t.Errorf("requests answered:\n\t%s\nwant:\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}

// browserStatusWriter logs a request's status when it is written.
type browserStatusWriter struct {
	http.ResponseWriter
	log    *browserRequests
	what   string
	logged bool
}

func (w *browserStatusWriter) WriteHeader(status int) {
	if !w.logged {
		w.logged = true
		line := fmt.Sprintf("%s %d", w.what, status)
		if ra := w.Header().Get("Retry-After"); ra != "" {
			line += " Retry-After: " + ra
		}
		w.log.mu.Lock()
		w.log.lines = append(w.log.lines, line)
		w.log.mu.Unlock()
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *browserStatusWriter) Write(b []byte) (int, error) {
	if !w.logged {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}
