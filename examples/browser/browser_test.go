package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/dvonthenen/websocket"

	"github.com/dglease/dglease/internal/browsertest"
	"github.com/dglease/dglease/internal/testenv"
	"github.com/dglease/dglease/keys/keystest"
)

// TestBrowserStreamsWithDeletedKey is the product's main job, end to end:
// a real (headless) Chromium loads the page, clicks Start, streams its fake
// microphone to the fake Deepgram's /v1/listen with a leased API key, and
// the transcript appears; the key is deleted once the socket is open, the
// stream outlives it, and the key can open no new stream.
func TestBrowserStreamsWithDeletedKey(t *testing.T) {
	e := startBrowserDemo(t)
	e.b.Do(
		chromedp.Click(chromedp.ID("start")),
		chromedp.WaitVisible(chromedp.CSS(`#transcript p.final`)),
		chromedp.WaitVisible(chromedp.CSS(`li[data-step="deleted"]`)),
		// Results keep arriving after the deletion: the stream outlives
		// its key, as Deepgram's guidance assumes.
		chromedp.WaitVisible(chromedp.CSS(`li[data-step="outlived"]`)),
		chromedp.Click(chromedp.ID("stop")),
		chromedp.WaitVisible(chromedp.CSS(`li[data-step="closed"]`)),
		// The audio used, read back from the fake by the visitor's tag.
		chromedp.WaitVisible(chromedp.CSS(`li[data-step="usage"]`)),
	)
	if n := e.count(`li[data-step="closed"].err, #error:not([hidden])`); n != 0 {
		t.Errorf("Stop ended the stream with an error: %s", e.b.Describe())
	}
	if issued := e.text(`li[data-step="issued"]`); !regexp.MustCompile(`API key issued \(\S+, lease [0-9a-f]{16}\): usage only`).MatchString(issued) {
		t.Errorf("issued step = %q, want it to name the key and the lease", issued)
	}
	used := e.text(`li[data-step="usage"]`)
	m := regexp.MustCompile(`This stream used ([0-9.]+) s of audio as the fake counts it by your tag: ([0-9.]+) s in 1 stream on `).FindStringSubmatch(used)
	if m == nil || m[1] != m[2] || m[1] == "0.0" {
		t.Errorf("usage step = %q, want this stream's seconds, not zero, equal to the day's", used)
	}
	if streams := e.fake.Streams(); len(streams) != 1 || streams[0].Audio <= 0 {
		t.Errorf("the fake recorded %d streams (%v), want one with audio", len(streams), streams)
	}

	e.deletedOnce()
	secrets := e.keys.Secrets()
	if len(secrets) != 1 {
		t.Fatalf("%d secrets issued, want 1", len(secrets))
	}

	// The deleted key can open no new stream.
	d := websocket.Dialer{Subprotocols: []string{"token", secrets[0]}, HandshakeTimeout: 10 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, res, err := d.DialContext(ctx, e.fake.ListenURL(), nil)
	if err == nil {
		conn.Close()
		t.Fatal("a new stream opened with the deleted key")
	}
	if res == nil {
		t.Fatalf("dial: %v (no HTTP answer)", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Errorf("dial with the deleted key: status %d, want 401", res.StatusCode)
	}
}

// TestBrowserStreamsWithGrantToken is the same with -grant: a grant token
// cannot be deleted, so the page says when it expires instead.
func TestBrowserStreamsWithGrantToken(t *testing.T) {
	e := startBrowserDemo(t, func(c *config) { c.Grant = true })
	e.b.Do(
		chromedp.Click(chromedp.ID("start")),
		chromedp.WaitVisible(chromedp.CSS(`#transcript p.final`)),
		chromedp.WaitVisible(chromedp.CSS(`li[data-step="released"]`)),
	)
	issued, released := e.text(`li[data-step="issued"]`), e.text(`li[data-step="released"]`)
	e.b.Do(
		chromedp.Click(chromedp.ID("stop")),
		chromedp.WaitVisible(chromedp.CSS(`li[data-step="closed"]`)),
		chromedp.WaitVisible(chromedp.CSS(`li[data-step="usage"]`)),
	)
	if used := e.text(`li[data-step="usage"]`); !strings.Contains(used, "a grant token carries no tags") {
		t.Errorf("usage step = %q, want it to say a grant token's stream is not attributed", used)
	}
	if !strings.Contains(issued, "Grant token issued (lease ") {
		t.Errorf("issued step = %q, want it to name the lease alone: a grant token has no key ID", issued)
	}
	if !strings.Contains(released, "cannot be deleted") {
		t.Errorf("released step = %q, want it to say the token cannot be deleted", released)
	}
	if n := e.grants(); n != 1 {
		t.Errorf("%d grant tokens issued, want 1", n)
	}
	if n := len(e.created()); n != 0 {
		t.Errorf("%d API keys created, want none", n)
	}
}

// TestBrowserShowsDenial: over the rate limit, the page shows the 429
// answer and opens no stream.
func TestBrowserShowsDenial(t *testing.T) {
	e := startBrowserDemo(t, func(c *config) { c.RateEvery, c.Burst = time.Hour, 1 })
	e.b.Do(
		chromedp.Click(chromedp.ID("start")),
		chromedp.WaitVisible(chromedp.CSS(`#transcript p.final`)),
		chromedp.Click(chromedp.ID("stop")),
		chromedp.WaitVisible(chromedp.CSS(`li[data-step="closed"]`)),
		chromedp.WaitEnabled(chromedp.ID("start")),
		chromedp.Click(chromedp.ID("start")),
		chromedp.WaitVisible(chromedp.ID("error")),
		chromedp.WaitVisible(chromedp.CSS(`li[data-step="denied"]`)),
	)
	msg := e.text("#error")
	if !regexp.MustCompile(`retry in [0-9]+ s`).MatchString(msg) {
		t.Errorf("error shown = %q, want the Retry-After", msg)
	}
	if n := len(e.created()); n != 1 {
		t.Errorf("%d keys created, want 1", n)
	}
}

// browserDemo is the example server on a loopback port, wired to a
// listening fake Deepgram, and a headless Chromium to drive it.
type browserDemo struct {
	t    *testing.T
	b    *browsertest.Browser
	s    *server
	fake *keystest.Server
	keys *browsertest.SecretRecorder
}

// startBrowserDemo starts the demo (API keys, no rate limit unless edit
// says otherwise) and loads its page in a fresh headless Chromium.
func startBrowserDemo(t *testing.T, edit ...func(*config)) *browserDemo {
	return startBrowserOn(t, nil, "/", `#about code`, edit...) // the page reached its backend
}

// startBrowserOn starts the demo behind wrap (if not nil), loads path in a
// fresh headless Chromium and waits until ready (a CSS selector) shows.
// A failure shows the page's state, error and timeline, and its console;
// when the test ends, the console must hold no credential issued.
func startBrowserOn(t *testing.T, wrap func(http.Handler) http.Handler, path, ready string, edit ...func(*config)) *browserDemo {
	browsertest.FindChromium(t) // skip before starting anything

	fake := keystest.NewServer(t)
	rec := &browsertest.SecretRecorder{KeyService: fake.Client()}
	logs := &testenv.Buffer{}
	cfg := testConfig(fake, rec, logs)
	cfg.ListenURL = fake.ListenURL()
	cfg.TTL = 30 * time.Second // longer than Chromium may take to start
	for _, e := range edit {
		e(&cfg)
	}
	s, err := newServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	closeAndCheckLog(t, s, logs, func() []string { return append(rec.Secrets(), fake.AdminKey()) })
	var h http.Handler = s
	if wrap != nil {
		h = wrap(s)
	}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close) // before closeAndCheckLog's: cleanups run last first

	b := browsertest.Start(t) // stopped before ts: cleanups run last first
	// When the test ends, no credential issued may have reached the
	// page's console or its text (registered after Start: it runs before
	// the browser stops).
	t.Cleanup(func() { b.CheckNoSecret(rec.Secrets()...) })
	b.ShowOnFailure(`document.getElementById('state').textContent`)
	b.ShowOnFailure(`document.getElementById('error').textContent`)
	b.ShowOnFailure(`[...document.querySelectorAll('#timeline li')].map((li) => li.textContent)`)
	b.Do(
		chromedp.Navigate(ts.URL+path),
		chromedp.WaitVisible(chromedp.CSS(ready)),
	)
	return &browserDemo{t: t, b: b, s: s, fake: fake, keys: rec}
}

// text returns the visible text of the element sel selects.
func (e *browserDemo) text(sel string) string {
	e.t.Helper()
	return browsertest.Run(e.b, chromedp.Text(chromedp.CSS(sel)))
}

// created returns the keys created on the fake, the admin key aside.
func (e *browserDemo) created() []keystest.KeyState {
	var out []keystest.KeyState
	for _, k := range e.fake.Keys() {
		if k.Key.ID != e.fake.AdminKeyID() {
			out = append(out, k)
		}
	}
	return out
}

// deletedOnce checks that exactly one key was created and that it is
// deleted already, once; it returns the key's state.
func (e *browserDemo) deletedOnce() keystest.KeyState {
	e.t.Helper()
	created := e.created()
	if len(created) != 1 {
		e.t.Fatalf("%d keys created, want 1", len(created))
	}
	st, ok := e.fake.Key(created[0].Key.ID)
	if !ok || st.Status != keystest.StatusDeleted || st.Deletes != 1 {
		e.t.Fatalf("leased key %s is %q after %d deletes (known to the fake: %t), want deleted once", st.Key.ID, st.Status, st.Deletes, ok)
	}
	return st
}

// grants returns how many grant tokens the fake issued.
func (e *browserDemo) grants() int {
	n := 0
	for _, r := range e.fake.Requests() {
		if r.Op == keystest.OpGrant && r.Status == http.StatusOK {
			n++
		}
	}
	return n
}

// TestBrowserShowsUnusableCredential: a proxy that answers the credential
// request 200 with something else must leave the page saying so, with
// Start usable again, not stalled with the microphone open.
func TestBrowserShowsUnusableCredential(t *testing.T) {
	wrap := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && r.URL.Path == "/api/deepgram/credential" {
				w.Header().Set("Content-Type", "text/html")
				_, _ = w.Write([]byte("<html>a captive portal</html>"))
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	e := startBrowserOn(t, wrap, "/", `#about code`)
	e.b.Do(
		chromedp.Click(chromedp.ID("start")),
		chromedp.WaitVisible(chromedp.ID("error")),
		chromedp.WaitEnabled(chromedp.ID("start")),
	)
	// client.js's connect rejects an answer that is not JSON before it
	// opens any socket; the page says what happened, not the parser's
	// message.
	if msg := e.text("#error"); !strings.Contains(msg, "The backend answered without a usable credential") {
		t.Errorf("error shown = %q, want it to say the backend's answer was no usable credential", msg)
	}
	if n := len(e.created()); n != 0 {
		t.Errorf("%d keys created, want 0", n)
	}
}

// TestBrowserStaleStreamWritesNothing: after a 429, the previous stream's
// status poll, still in flight, must not write into the fresh timeline
// (it used to add "Key deleted … This stream keeps running" there). The
// status requests of the first stream are held until the second attempt
// was refused; then they are answered, and the test waits until the page
// has handled both answers before it reads the timeline.
func TestBrowserStaleStreamWritesNothing(t *testing.T) {
	var (
		heldNote = make(chan struct{}, 16)
		gate     = make(chan struct{})
		openGate = sync.OnceFunc(func() { close(gate) })
	)
	t.Cleanup(openGate)
	wrap := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/api/status") {
				heldNote <- struct{}{}
				select {
				case <-gate:
				case <-r.Context().Done():
					return
				}
			}
			h.ServeHTTP(w, r)
		})
	}
	e := startBrowserOn(t, wrap, "/", `#about code`, func(c *config) { c.RateEvery, c.Burst = time.Hour, 1 })
	e.b.Do(
		chromedp.Click(chromedp.ID("start")),
		chromedp.WaitVisible(chromedp.CSS(`#transcript p.final`)),
		chromedp.WaitVisible(chromedp.CSS(`li[data-step="released"]`)),
	)
	// Held: the page's question about its lease when the socket opened,
	// and the first status poll after the release.
	for i := range 2 {
		select {
		case <-heldNote:
		case <-e.b.Context().Done():
			t.Fatalf("%d status requests held, want 2\n%s", i, e.b.Describe())
		}
	}
	e.b.Do(
		chromedp.Click(chromedp.ID("stop")),
		chromedp.WaitVisible(chromedp.CSS(`li[data-step="closed"]`)),
		chromedp.WaitEnabled(chromedp.ID("start")),
		chromedp.Click(chromedp.ID("start")),
		chromedp.WaitVisible(chromedp.CSS(`li[data-step="denied"]`)),
	)
	// window.statusHandled resolves once the page has handled both status
	// answers: a macrotask queued when a body is parsed runs after every
	// microtask that the page's awaits on it run, and so after whatever
	// the page writes.
	browsertest.Eval[bool](e.b, `(() => {
		let handled = 0, done;
		window.statusHandled = new Promise((resolve) => { done = resolve; });
		const json = Response.prototype.json;
		Response.prototype.json = function () {
			const p = json.call(this);
			if (new URL(this.url).pathname.startsWith('/api/status')) {
				const counted = () => setTimeout(() => { if (++handled === 2) done(true); }, 0);
				p.then(counted, counted);
			}
			return p;
		};
		return true;
	})()`)
	openGate()
	browsertest.Eval[bool](e.b, `window.statusHandled`) // awaited until b's deadline

	got := browsertest.Eval[string](e.b, `[...document.querySelectorAll('#timeline li')].map((li) => li.dataset.step).join(' ')`)
	if got != "mic denied" {
		t.Errorf("timeline after the 429 = %q, want %q: the first stream wrote into it\n%s", got, "mic denied", e.b.Describe())
	}
	if state := e.text("#state"); state != "Stopped." {
		t.Errorf("state = %q, want Stopped.", state)
	}
}

// TestBrowserShowsStreamClosedByServer: a stream the server closes (here
// the fake shutting down: 1001) ends with an error that says so, with the
// code, not with "Done".
func TestBrowserShowsStreamClosedByServer(t *testing.T) {
	e := startBrowserDemo(t)
	e.b.Do(
		chromedp.Click(chromedp.ID("start")),
		chromedp.WaitVisible(chromedp.CSS(`#transcript p.final`)),
		chromedp.WaitVisible(chromedp.CSS(`li[data-step="deleted"]`)),
	)
	e.fake.Close() // closes the open stream with 1001
	e.b.Do(
		chromedp.WaitVisible(chromedp.CSS(`li[data-step="closed"]`)),
		chromedp.WaitEnabled(chromedp.ID("start")),
	)
	if n := e.count(`li[data-step="closed"].err`); n != 1 {
		t.Errorf("the closed step is not shown as an error\n%s", e.b.Describe())
	}
	if n := e.count(`#error:not([hidden])`); n != 1 {
		t.Fatalf("no error shown\n%s", e.b.Describe())
	}
	if msg := e.text("#error"); !strings.Contains(msg, "The server closed the stream (code 1001") {
		t.Errorf("error shown = %q, want it to say the server closed the stream, with code 1001", msg)
	}
	if state := e.text("#state"); strings.Contains(state, "Done") {
		t.Errorf("state = %q, want no Done", state)
	}
}

// TestBrowserCountsDownRetryAfter: after a 429 with Retry-After: 3, Start
// says "Try again in 3 s" and counts down, then is Start again, enabled,
// and works. A background tab runs its timers late: with every timer of
// the page 1.2 s late, the countdown still ends when Retry-After does,
// never before, and skips the labels it slept through.
func TestBrowserCountsDownRetryAfter(t *testing.T) {
	for _, late := range []int{0, 1200} {
		t.Run(fmt.Sprintf("timers %d ms late", late), func(t *testing.T) {
			e := startBrowserDemo(t)
			e.fake.Fail(keystest.OpCreate, keystest.Fault{Status: http.StatusTooManyRequests, RetryAfter: 3 * time.Second})
			browsertest.Eval[bool](e.b, fmt.Sprintf(`(() => {
				const late = %d, setTimeout = window.setTimeout;
				if (late) window.setTimeout = (f, ms, ...args) => setTimeout(f, (ms || 0) + late, ...args);
				const b = document.getElementById('start');
				window.startLabels = [];
				new MutationObserver(() => {
					const label = b.textContent + (b.disabled ? ' (disabled)' : '');
					if (window.startLabels.at(-1)?.label !== label) window.startLabels.push({ label, at: performance.now() });
				}).observe(b, { childList: true, characterData: true, subtree: true, attributes: true });
				return true;
			})()`, late))
			e.b.Do(
				chromedp.Click(chromedp.ID("start")),
				chromedp.WaitVisible(chromedp.CSS(`li[data-step="denied"]`)),
				chromedp.WaitEnabled(chromedp.ID("start")),
			)
			checkCountdown(t, browsertest.Eval[[]startLabel](e.b, `window.startLabels`), 3)
			// And Start works again.
			e.b.Do(
				chromedp.Click(chromedp.ID("start")),
				chromedp.WaitVisible(chromedp.CSS(`#transcript p.final`)),
			)
		})
	}
}

// startLabel is a label Start showed, and when (the page's clock, ms).
type startLabel struct {
	Label string  `json:"label"`
	At    float64 `json:"at"`
}

// checkCountdown checks the labels Start showed during a countdown of
// seconds. However late each tick runs, every label tells the truth when
// it shows: "Try again in N s" with more than N-1 s left (the old
// countdown said "2 s" at 2.2 s, with 0.8 s left), and Start comes back
// only once the seconds are up. Measured on the page's own clock, so how
// late a loaded machine runs the timers does not matter.
func checkCountdown(t *testing.T, labels []startLabel, seconds int) {
	t.Helper()
	var names []string
	for _, l := range labels {
		names = append(names, l.Label)
	}
	got := strings.Join(names, " | ")
	first := fmt.Sprintf("Try again in %d s (disabled)", seconds)
	if len(labels) < 3 || labels[0].Label != "Start (disabled)" || labels[1].Label != first || labels[len(labels)-1].Label != "Start" {
		t.Fatalf("Start's labels = %q, want Start (disabled), %s, ..., Start", got, first)
	}
	began := labels[1].At
	for _, l := range labels[2 : len(labels)-1] {
		var n int
		if _, err := fmt.Sscanf(l.Label, "Try again in %d s (disabled)", &n); err != nil {
			t.Fatalf("label %q in %q", l.Label, got)
		}
		if left := float64(seconds) - (l.At-began)/1000; left <= float64(n-1) {
			t.Errorf("%q shown with %.2f s left (labels %q)", l.Label, left, got)
		}
	}
	// The observer records a moment after the countdown starts.
	if took := time.Duration((labels[len(labels)-1].At - began) * float64(time.Millisecond)); took < time.Duration(seconds)*time.Second-50*time.Millisecond {
		t.Errorf("Start enabled %v after the countdown began, before its %d s were up", took, seconds)
	}
}

// TestBrowserSaysStatusIsKnownElsewhere: with several copies of the demo,
// only the copy that issued a credential knows its status (each keeps its
// own ledger). Here every status request reaches another copy, which
// answers 404: the page says so instead of showing nothing.
func TestBrowserSaysStatusIsKnownElsewhere(t *testing.T) {
	other := newHarness(t).s // another copy of the demo, with its own ledger
	wrap := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/api/status/") {
				other.ServeHTTP(w, r)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	e := startBrowserOn(t, wrap, "/", `#about code`)
	e.b.Do(
		chromedp.Click(chromedp.ID("start")),
		chromedp.WaitVisible(chromedp.CSS(`#transcript p.final`)),
		chromedp.WaitVisible(chromedp.CSS(`li[data-step="status-unknown"]`)),
	)
	if note := e.text(`li[data-step="status-unknown"]`); !strings.Contains(note, "only known to the copy of the demo that issued this credential") {
		t.Errorf("note = %q, want it to say which copy knows the status", note)
	}
}
