package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/internal/testenv"
	"github.com/dglease/dglease/lease/leasehttp"
)

// TestRunWithEmbeddedFake runs the program's run as main does, without
// DEEPGRAM_API_KEY: it says first that it uses the fake, serves the page,
// issues a credential, and on shutdown deletes the credential still leased.
func TestRunWithEmbeddedFake(t *testing.T) {
	logs := &recordLog{notify: make(chan struct{}, 1)}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- run(ctx, slog.New(logs), "127.0.0.1:0", false, 10*time.Second, "", "") }()

	wait, cancel := context.WithTimeout(context.Background(), 30*time.Second) // safety net
	defer cancel()
	opened := logs.wait(wait, t, "open the demo page")
	first := logs.all()[0]
	assert.Equal(t, "DEEPGRAM_API_KEY is not set: using the embedded fake Deepgram", first.Message, "first log line")
	page := attr(opened, "url")
	require.True(t, strings.HasPrefix(page, "http://127.0.0.1:"), "page URL %q", page)

	res, err := http.Get(page)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	cookies := res.Cookies()
	require.Len(t, cookies, 1)

	// The page's module: leasehttp's client.js is served beside it.
	res, err = http.Get(page + "api/deepgram/client.js")
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)

	var ab about
	getJSON(t, page+"api/about", cookies[0], &ab)
	assert.True(t, strings.HasPrefix(ab.ListenURL, "ws://127.0.0.1:"), "listen_url %q is the fake's", ab.ListenURL)
	assert.True(t, strings.HasSuffix(ab.ListenURL, "/v1/listen"), "listen_url %q", ab.ListenURL)

	c := postCredential(t, page, cookies[0])

	// The hand-off ends: the page reports its socket open.
	req, _ := http.NewRequest("POST", page+"api/deepgram/release", strings.NewReader(`{"release":"`+c.Release+`"}`))
	req.AddCookie(cookies[0])
	res, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusNoContent, res.StatusCode)

	// The visitor's usage, read back from the fake: no stream, no audio.
	var u usage
	getJSON(t, page+"api/usage", cookies[0], &u)
	assert.True(t, u.Attributable)
	assert.Zero(t, u.Seconds)

	// /metrics shows it in the Prometheus text format.
	res, err = http.Get(page + "metrics")
	require.NoError(t, err)
	scrape, err := io.ReadAll(res.Body)
	res.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode)
	for _, want := range []string{
		"dglease_lease_acquired_total 1",
		`dglease_lease_ended_total{dglease_reason="released"} 1`,
		"dglease_lease_live 0",
		`dglease_key_create_duration_seconds_count{dglease_outcome="success"} 1`,
	} {
		assert.True(t, strings.Contains(string(scrape), "\n"+want+"\n"), "the scrape lacks %q", want)
	}
	testenv.NoSecret(t, "the /metrics scrape", string(scrape), c.Secret)

	// A second credential, still leased when the program stops.
	second := postCredential(t, page, cookies[0])

	stop() // as SIGINT does
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-wait.Done():
		t.Fatal("run did not return after its context ended")
	}
	var reasons []string
	for _, r := range logs.all() {
		if r.Message == "lease ended" {
			reasons = append(reasons, attr(r, "lease.reason"))
		}
	}
	assert.Equal(t, []string{"released", "manager closed"}, reasons, "the page released the first lease; shutdown ended the second")
	for i, r := range logs.all() {
		assert.Less(t, r.Level, slog.LevelWarn, "unexpected %s log: %s", r.Level, r.Message)
		testenv.NoSecret(t, fmt.Sprintf("log line %d", i), r.Message+" "+attrs(r), c.Secret, second.Secret, cookies[0].Value)
	}
}

// postCredential asks the running demo at page for a credential, as the
// visitor with the session cookie.
func postCredential(t *testing.T, page string, cookie *http.Cookie) credential {
	t.Helper()
	req, _ := http.NewRequest("POST", page+"api/deepgram/credential", nil)
	req.AddCookie(cookie)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	var c credential
	require.NoError(t, json.NewDecoder(res.Body).Decode(&c))
	require.NotEmpty(t, c.Secret)
	return c
}

// getJSON decodes the answer to GET url, sent with cookie, into v.
func getJSON(t *testing.T, url string, cookie *http.Cookie, v any) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.AddCookie(cookie)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode, url)
	require.NoError(t, json.NewDecoder(res.Body).Decode(v))
}

// recordLog is a slog.Handler that keeps every record, for assertions.
type recordLog struct {
	mu      sync.Mutex
	records []slog.Record
	notify  chan struct{} // signalled after each record
}

func (l *recordLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *recordLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *recordLog) WithGroup(string) slog.Handler            { return l }

func (l *recordLog) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.records = append(l.records, r.Clone())
	l.mu.Unlock()
	select {
	case l.notify <- struct{}{}:
	default:
	}
	return nil
}

func (l *recordLog) all() []slog.Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]slog.Record(nil), l.records...)
}

// wait returns the first record with message msg, waiting for it.
func (l *recordLog) wait(ctx context.Context, t *testing.T, msg string) slog.Record {
	t.Helper()
	for {
		for _, r := range l.all() {
			if r.Message == msg {
				return r
			}
		}
		select {
		case <-l.notify:
		case <-ctx.Done():
			t.Fatalf("no %q log line", msg)
		}
	}
}

// attr returns the value of r's attribute key ("group.key" inside groups,
// resolving LogValuers), or "".
func attr(r slog.Record, key string) string {
	var found string
	r.Attrs(func(a slog.Attr) bool {
		walk("", a, func(k, v string) {
			if k == key {
				found = v
			}
		})
		return true
	})
	return found
}

// attrs renders every attribute of r.
func attrs(r slog.Record) string {
	var b strings.Builder
	r.Attrs(func(a slog.Attr) bool {
		walk("", a, func(k, v string) { b.WriteString(k + "=" + v + " ") })
		return true
	})
	return b.String()
}

func walk(prefix string, a slog.Attr, fn func(key, value string)) {
	v := a.Value.Resolve()
	key := a.Key
	if prefix != "" {
		key = prefix + "." + key
	}
	if v.Kind() == slog.KindGroup {
		for _, g := range v.Group() {
			walk(key, g, fn)
		}
		return
	}
	fn(key, v.String())
}

// TestBackendWithAPIKey checks the wiring for the real service without
// calling it (keys.New makes no network call).
func TestBackendWithAPIKey(t *testing.T) {
	t.Setenv("DEEPGRAM_API_KEY", strings.Repeat("a", 40))
	t.Setenv("DEEPGRAM_PROJECT_ID", "project-1")
	logs := &recordLog{notify: make(chan struct{}, 1)}
	cfg, stop, err := backend(slog.New(logs))
	require.NoError(t, err)
	defer stop()
	assert.Equal(t, "wss://api.deepgram.com/v1/listen", cfg.ListenURL)
	assert.Equal(t, "Deepgram", cfg.Backend)
	assert.Nil(t, cfg.KeyStatus, "only the fake reports key states")
	require.Len(t, logs.all(), 1)
	assert.Equal(t, "using Deepgram", logs.all()[0].Message)
	assert.Equal(t, "https://api.deepgram.com", attr(logs.all()[0], "host"))
}

// A mistyped -redis URL is refused with an error that does not repeat the
// URL: it may hold the Redis password.
func TestRunRefusesABadRedisURLWithoutItsPassword(t *testing.T) {
	const password = "s3cret-redis-password"
	logs := &testenv.Buffer{}
	err := run(context.Background(), slog.New(slog.NewTextHandler(logs, nil)), "127.0.0.1:0", false, 10*time.Second, "redis://:"+password+"@host:bad/0", "")
	require.Error(t, err)
	assert.True(t, strings.Contains(err.Error(), "-redis"), "the error names the flag")
	testenv.NoSecret(t, "run's error", err.Error(), password)
	testenv.NoSecret(t, "the log", logs.String(), password)
}

// A DEMO_RELEASE_KEY that is not hex, or is too short, stops run before
// anything starts, with an error that names the variable and says what to
// set, and never shows the value.
func TestRunRefusesABadReleaseKey(t *testing.T) {
	for name, value := range map[string]string{
		"not hex":   "not-a-hex-key-but-a-password-someone-typed-in-0123456789abcdef",
		"odd hex":   strings.Repeat("ab", 32) + "c",
		"too short": strings.Repeat("5e", leasehttp.MinReleaseKeyLen-1),
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv("DEMO_RELEASE_KEY", value)
			logs := &testenv.Buffer{}
			err := run(context.Background(), slog.New(slog.NewTextHandler(logs, nil)), "127.0.0.1:0", false, 10*time.Second, "", "")
			require.Error(t, err)
			assert.Contains(t, err.Error(), "DEMO_RELEASE_KEY", "the error names the variable")
			assert.Contains(t, err.Error(), "at least 32 random bytes in hex", "the error says what to set")
			testenv.NoSecret(t, "run's error", err.Error(), value)
			assert.Empty(t, logs.String(), "nothing started")
		})
	}
}

// With -redis, run warns at start-up when DEMO_RELEASE_KEY is not set (a
// release reaching another copy would be refused), and not when it is; a
// key with surrounding whitespace (from a file) is accepted.
func TestRunWithRedisWarnsWithoutReleaseKey(t *testing.T) {
	mr := miniredis.RunT(t)
	key := strings.Repeat("0123456789abcdef", 4)
	for name, value := range map[string]string{"unset": "", "set": " " + key + "\n"} {
		t.Run(name, func(t *testing.T) {
			t.Setenv("DEMO_RELEASE_KEY", value)
			logs := &recordLog{notify: make(chan struct{}, 1)}
			ctx, stop := context.WithCancel(context.Background())
			defer stop()
			done := make(chan error, 1)
			go func() {
				done <- run(ctx, slog.New(logs), "127.0.0.1:0", false, 10*time.Second, "redis://"+mr.Addr()+"/0", "")
			}()

			wait, cancel := context.WithTimeout(context.Background(), 30*time.Second) // safety net
			defer cancel()
			logs.wait(wait, t, "open the demo page")
			stop()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-wait.Done():
				t.Fatal("run did not return after its context ended")
			}
			var warnings []string
			for i, r := range logs.all() {
				if r.Level >= slog.LevelWarn {
					warnings = append(warnings, r.Message)
				}
				testenv.NoSecret(t, fmt.Sprintf("log line %d", i), r.Message+" "+attrs(r), key)
			}
			if value == "" {
				assert.Equal(t, []string{releaseKeyWarning}, warnings)
				assert.Contains(t, releaseKeyWarning, "DEMO_RELEASE_KEY is not set")
				assert.Contains(t, releaseKeyWarning, "another copy")
			} else {
				assert.Empty(t, warnings)
			}
		})
	}
}
