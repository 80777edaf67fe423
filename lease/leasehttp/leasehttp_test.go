package leasehttp_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/internal/testenv"
	"github.com/dglease/dglease/keys/keystest"
	"github.com/dglease/dglease/lease"
	"github.com/dglease/dglease/lease/leasehttp"
)

// userHeader names the request's user in these tests; identify reads it.
const userHeader = "X-Test-User"

// teapot is an identify error that chooses its status.
type teapot struct{}

func (teapot) Error() string   { return "this endpoint brews no credentials for teapots" }
func (teapot) StatusCode() int { return http.StatusTeapot }

func identify(r *http.Request) (string, error) {
	switch u := r.Header.Get(userHeader); u {
	case "":
		return "", errors.New("no session: database said something internal")
	case "teapot":
		return "", teapot{}
	case "nobody":
		return "", nil // a bug in identify: no user and no error
	case "garbled":
		return "a\xffb", nil // a bug in identify: a user Acquire refuses
	default:
		return u, nil
	}
}

// replica is one Manager and its Handler on a shared fake.
type replica struct {
	m    *lease.Manager
	h    *leasehttp.Handler
	logs *testenv.Buffer
}

// newReplica builds a Manager on srv (no rate limit unless mopts set one)
// and its Handler, closed when the test ends.
func newReplica(t testing.TB, srv *keystest.Server, mopts []lease.Option, hopts ...leasehttp.Option) *replica {
	t.Helper()
	m, err := lease.New(srv.Client(), append([]lease.Option{lease.WithRateLimit(0, 1)}, mopts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	logs := &testenv.Buffer{}
	h, err := leasehttp.New(m, identify, append([]leasehttp.Option{leasehttp.WithLogger(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))}, hopts...)...)
	require.NoError(t, err)
	return &replica{m: m, h: h, logs: logs}
}

func fake(t testing.TB, opts ...keystest.Option) *keystest.Server {
	return keystest.NewServer(t, append([]keystest.Option{keystest.WithoutListener()}, opts...)...)
}

// serve runs one request through h.
func serve(h http.Handler, method, path, user, body string, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if user != "" {
		r.Header.Set(userHeader, user)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// credential is POST /credential's answer.
type credential struct {
	Secret      string   `json:"secret"`
	Subprotocol []string `json:"subprotocol"`
	LeaseID     string   `json:"lease_id"`
	Expires     string   `json:"expires"`
	Revocable   bool     `json:"revocable"`
	Release     string   `json:"release"`
}

func getCredential(t testing.TB, h http.Handler, user string) credential {
	t.Helper()
	w := serve(h, http.MethodPost, "/credential", user, "")
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	var c credential
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &c))
	return c
}

func releaseBody(handle string) string {
	b, _ := json.Marshal(map[string]string{"release": handle})
	return string(b)
}

// errorBody decodes an error answer, checking it is JSON with no-store.
func errorBody(t *testing.T, w *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	assert.Equal(t, "application/json", w.Header().Get("Content-Type"))
	assert.Equal(t, "no-store", w.Header().Get("Cache-Control"))
	var m map[string]any
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &m), w.Body.String())
	assert.NotEmpty(t, m["error"])
	return m
}

// keyOf is the fake's record of c's key, found by the lease ID its marker
// carries.
func keyOf(t *testing.T, srv *keystest.Server, c credential) keystest.KeyState {
	t.Helper()
	for _, k := range srv.Keys() {
		if mk, err := lease.ParseMarker(k.Key.Comment, k.Key.Tags); err == nil && mk.Lease == c.LeaseID {
			return k
		}
	}
	t.Fatalf("no key on the fake for lease %s", c.LeaseID)
	return keystest.KeyState{}
}

func TestCredentialAnswer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		r := newReplica(t, srv, []lease.Option{lease.WithTTL(20 * time.Second)})
		start := time.Now()
		w := serve(r.h, http.MethodPost, "/credential", "alice", "")
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		assert.Equal(t, "application/json", w.Header().Get("Content-Type"))
		assert.Equal(t, "no-store", w.Header().Get("Cache-Control"))

		var raw map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &raw))
		var fields []string
		for k := range raw {
			fields = append(fields, k)
		}
		assert.ElementsMatch(t, []string{"secret", "subprotocol", "lease_id", "expires", "revocable", "release"}, fields)

		var c credential
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &c))
		assert.NotEmpty(t, c.Secret)
		assert.Equal(t, []string{"token", c.Secret}, c.Subprotocol)
		assert.Regexp(t, `^[0-9a-f]{16}$`, c.LeaseID)
		exp, err := time.Parse(time.RFC3339, c.Expires)
		require.NoError(t, err)
		assert.Equal(t, start.Add(20*time.Second).UTC(), exp, "TTL counted from the key's arrival (no time passes in the bubble)")
		assert.True(t, c.Revocable)
		assert.NotEmpty(t, c.Release)
		testenv.NoSecret(t, "the release handle", c.Release, c.Secret)

		k := keyOf(t, srv, c)
		assert.Equal(t, keystest.StatusActive, k.Status)
		assert.Equal(t, []string{lease.DefaultScope}, k.Key.Scopes)
		owner, live := r.m.Owner(c.LeaseID)
		assert.True(t, live)
		assert.Equal(t, "alice", owner)
		testenv.NoSecret(t, "the handler's log", r.logs.String(), c.Secret)
	})
}

func TestGrantTokenCredential(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		r := newReplica(t, srv, []lease.Option{lease.WithGrantTokens()})
		c := getCredential(t, r.h, "alice")
		assert.Equal(t, []string{"bearer", c.Secret}, c.Subprotocol)
		assert.False(t, c.Revocable)
		w := serve(r.h, http.MethodPost, "/release", "alice", releaseBody(c.Release))
		assert.Equal(t, http.StatusNoContent, w.Code, w.Body.String())
		_, live := r.m.Owner(c.LeaseID)
		assert.False(t, live, "released locally")
	})
}

// The handler keeps no *Lease: collecting it must not end the lease, as
// leak detection would end an undetached one within a second.
func TestDroppedLeaseDoesNotEndEarly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		r := newReplica(t, srv, []lease.Option{lease.WithTTL(30 * time.Second)})
		c := getCredential(t, r.h, "alice")
		for range 5 {
			runtime.GC()
			time.Sleep(2 * time.Second) // the leak check runs every second
		}
		require.NoError(t, r.m.Flush(context.Background()))
		_, live := r.m.Owner(c.LeaseID)
		assert.True(t, live, "the lease outlives the handler and its *Lease")
		assert.Equal(t, keystest.StatusActive, keyOf(t, srv, c).Status)
		assert.Zero(t, r.m.Stats().Leaked)

		time.Sleep(30 * time.Second) // its TTL ends it
		synctest.Wait()
		require.NoError(t, r.m.Flush(context.Background()))
		assert.Equal(t, keystest.StatusDeleted, keyOf(t, srv, c).Status)
		assert.Zero(t, r.m.Stats().Leaked)
	})
}

func TestReleaseDeletesAtOnceAndIsIdempotent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		r := newReplica(t, srv, nil)
		c := getCredential(t, r.h, "alice")
		for range 3 {
			w := serve(r.h, http.MethodPost, "/release", "alice", releaseBody(c.Release))
			require.Equal(t, http.StatusNoContent, w.Code, w.Body.String())
			assert.Empty(t, w.Body.String())
		}
		require.NoError(t, r.m.Flush(context.Background()))
		k := keyOf(t, srv, c)
		assert.Equal(t, keystest.StatusDeleted, k.Status)
		assert.Equal(t, 1, k.Deletes)
		s := r.m.Stats()
		assert.Equal(t, uint64(1), s.Released)
		assert.Equal(t, uint64(1), s.DeleteAttempts, "a repeated release deletes nothing more")
	})
}

func TestErrorStatuses(t *testing.T) {
	big := `{"release": "` + strings.Repeat("a", 5000) + `"}`
	for _, tc := range []struct {
		name, method, path, user, body string
		status                         int
		allow                          string
		says                           string
	}{
		{"credential by GET", http.MethodGet, "/credential", "alice", "", 405, "POST, OPTIONS", "use POST"},
		{"release by PUT", http.MethodPut, "/release", "alice", "", 405, "POST, OPTIONS", "use POST"},
		{"client.js by POST", http.MethodPost, "/client.js", "alice", "", 405, "GET, HEAD", "GET"},
		{"unknown route", http.MethodPost, "/keys", "alice", "", 404, "", "POST /credential"},
		{"no user", http.MethodPost, "/credential", "", "", 401, "", "not signed in"},
		{"identify chooses its status", http.MethodPost, "/credential", "teapot", "", 418, "", "teapots"},
		{"identify names no user", http.MethodPost, "/credential", "nobody", "", 500, "", "no usable user"},
		{"identify names a user Acquire refuses", http.MethodPost, "/credential", "garbled", "", 500, "", "no usable user"},
		{"credential body not JSON", http.MethodPost, "/credential", "alice", "please", 400, "", "malformed body"},
		{"credential body with unknown field", http.MethodPost, "/credential", "alice", `{"user":"bob"}`, 400, "", "malformed body"},
		{"credential body too big", http.MethodPost, "/credential", "alice", big, 413, "", "over 4096 bytes"},
		{"release without body", http.MethodPost, "/release", "alice", "", 400, "", "missing release handle"},
		{"release body not JSON", http.MethodPost, "/release", "alice", "{", 400, "", "malformed body"},
		{"release body with two values", http.MethodPost, "/release", "alice", `{"release":"a"} {}`, 400, "", "malformed body"},
		{"release body too big", http.MethodPost, "/release", "alice", big, 413, "", "over 4096 bytes"},
		{"release handle not a handle", http.MethodPost, "/release", "alice", `{"release":"!!"}`, 403, "", "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := fake(t)
				r := newReplica(t, srv, nil)
				w := serve(r.h, tc.method, tc.path, tc.user, tc.body)
				assert.Equal(t, tc.status, w.Code, w.Body.String())
				assert.Equal(t, tc.allow, w.Header().Get("Allow"))
				body := errorBody(t, w)
				assert.Contains(t, body["error"], tc.says)
				assert.NotContains(t, w.Body.String(), "database", "identify's own error stays in the log")
				assert.Len(t, srv.Keys(), 1, "nothing minted (the admin key only)")
			})
		})
	}
}

func TestIdentifyErrorIsLoggedNotSent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newReplica(t, fake(t), nil)
		w := serve(r.h, http.MethodPost, "/credential", "", "")
		require.Equal(t, http.StatusUnauthorized, w.Code)
		assert.Contains(t, r.logs.String(), "database said something internal")
	})
}

func TestManagerClosedAnswers503(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		r := newReplica(t, srv, nil)
		c := getCredential(t, r.h, "alice")
		require.NoError(t, r.m.Close(context.Background()))
		w := serve(r.h, http.MethodPost, "/credential", "alice", "")
		assert.Equal(t, http.StatusServiceUnavailable, w.Code)
		assert.Contains(t, errorBody(t, w)["error"], "shutting down")
		// A release after Close: the lease already ended with Close.
		w = serve(r.h, http.MethodPost, "/release", "alice", releaseBody(c.Release))
		assert.Equal(t, http.StatusNoContent, w.Code, w.Body.String())
	})
}

func TestDeepgramFailureAnswers502WithNoDetail(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		r := newReplica(t, srv, nil)
		srv.Fail(keystest.OpCreate, keystest.Fault{Status: 500, Body: `{"err_code":"INTERNAL","err_msg":"shard 7 is down; key ` + srv.AdminKey() + `"}`})
		w := serve(r.h, http.MethodPost, "/credential", "alice", "")
		require.Equal(t, http.StatusBadGateway, w.Code)
		assert.Equal(t, map[string]any{"error": "Deepgram did not issue a credential; try again later"}, errorBody(t, w))
		assert.Contains(t, r.logs.String(), "shard 7", "the cause is logged")
		testenv.NoSecret(t, "the handler's log", r.logs.String(), srv.AdminKey())
	})
}

func TestRefusalsAnswer429WithRetryAfterRoundedUp(t *testing.T) {
	t.Run("rate limit", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := newReplica(t, fake(t), []lease.Option{lease.WithRateLimit(2500*time.Millisecond, 1)})
			getCredential(t, r.h, "alice")
			w := serve(r.h, http.MethodPost, "/credential", "alice", "")
			require.Equal(t, http.StatusTooManyRequests, w.Code)
			assert.Equal(t, "3", w.Header().Get("Retry-After"), "2.5 s rounds up")
			body := errorBody(t, w)
			assert.Equal(t, float64(3), body["retry_after"])
			assert.Equal(t, "no credential now (per-user rate limit); retry in 3 s", body["error"], "as the README shows it")

			time.Sleep(2500 * time.Millisecond)
			getCredential(t, r.h, "alice") // waiting as told is enough
		})
	})
	t.Run("Deepgram's own 429", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			srv := fake(t)
			r := newReplica(t, srv, nil)
			srv.Fail(keystest.OpCreate, keystest.Fault{Status: 429, RetryAfter: 7 * time.Second})
			w := serve(r.h, http.MethodPost, "/credential", "alice", "")
			require.Equal(t, http.StatusTooManyRequests, w.Code, w.Body.String())
			assert.Equal(t, "7", w.Header().Get("Retry-After"))
			assert.Equal(t, float64(7), errorBody(t, w)["retry_after"])
		})
	})
	t.Run("cap on one user's leases", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := newReplica(t, fake(t), []lease.Option{lease.WithMaxLeases(10, 1), lease.WithTTL(1500 * time.Millisecond)})
			getCredential(t, r.h, "alice")
			w := serve(r.h, http.MethodPost, "/credential", "alice", "")
			require.Equal(t, http.StatusTooManyRequests, w.Code, w.Body.String())
			assert.Equal(t, "2", w.Header().Get("Retry-After"))
		})
	})
}

func TestRetryAfterSeconds(t *testing.T) {
	for d, want := range map[time.Duration]int64{
		0: 1, time.Nanosecond: 1, time.Second: 1, time.Second + time.Millisecond: 2, 59*time.Second + 1: 60,
	} {
		assert.Equal(t, want, leasehttp.RetryAfterSeconds(d), d)
	}
}

func TestBadReleaseHandlesDeleteNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		r := newReplica(t, srv, nil)
		c := getCredential(t, r.h, "alice")
		raw, err := base64.RawURLEncoding.DecodeString(c.Release)
		require.NoError(t, err)
		altered := func(i int) string {
			b := append([]byte(nil), raw...)
			b[i] ^= 1
			return base64.RawURLEncoding.EncodeToString(b)
		}
		forged := base64.RawURLEncoding.EncodeToString(append(append([]byte(nil), raw[:len(raw)-32]...), make([]byte, 32)...))
		for _, tc := range []struct {
			name, user, handle, says string
		}{
			{"another user", "bob", c.Release, "not valid for this user"},
			{"lease ID altered", "alice", altered(10), "not valid for this user"},
			{"expiry altered", "alice", altered(24), "not valid for this user"},
			{"signature altered", "alice", altered(len(raw) - 1), "not valid for this user"},
			{"forged signature", "alice", forged, "not valid for this user"},
			{"truncated", "alice", c.Release[:len(c.Release)-4], "malformed"},
			{"one character", "alice", "A", "malformed"},
			{"version changed", "alice", altered(0), "malformed"},
			{"padded", "alice", c.Release + "==", "malformed"},
		} {
			w := serve(r.h, http.MethodPost, "/release", tc.user, releaseBody(tc.handle))
			assert.Equal(t, http.StatusForbidden, w.Code, tc.name)
			assert.Contains(t, errorBody(t, w)["error"], tc.says, tc.name)
		}
		require.NoError(t, r.m.Flush(context.Background()))
		_, live := r.m.Owner(c.LeaseID)
		assert.True(t, live, "nothing released")
		assert.Zero(t, r.m.Stats().DeleteAttempts, "nothing deleted")

		// Past its expiry the handle is refused too (the TTL ended the
		// lease and deleted the key already).
		time.Sleep(lease.DefaultTTL)
		w := serve(r.h, http.MethodPost, "/release", "alice", releaseBody(c.Release))
		assert.Equal(t, http.StatusForbidden, w.Code)
		assert.Contains(t, errorBody(t, w)["error"], "expired")
	})
}

func TestCrossSiteRequestsAreRefusedBeforeMinting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		r := newReplica(t, srv, nil)
		for _, hdr := range [][]string{
			{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"},
			{"Origin", "https://evil.example"},                                    // an older browser: no Sec-Fetch-Site
			{"Sec-Fetch-Site", "same-site", "Origin", "https://blog.example.com"}, // a sibling subdomain
		} {
			w := serve(r.h, http.MethodPost, "/credential", "alice", "", hdr...)
			assert.Equal(t, http.StatusForbidden, w.Code, hdr)
			assert.Contains(t, errorBody(t, w)["error"], "WithAllowedOrigins")
			assert.Empty(t, w.Header().Get("Access-Control-Allow-Origin"))
		}
		// A preflight from it is refused too.
		w := serve(r.h, http.MethodOptions, "/credential", "", "", "Origin", "https://evil.example", "Access-Control-Request-Method", "POST")
		assert.Equal(t, http.StatusForbidden, w.Code)
		assert.Len(t, srv.Keys(), 1, "nothing minted")

		// Same-origin pages and clients that are not browsers are served.
		getCredential(t, r.h, "alice")
		w = serve(r.h, http.MethodPost, "/credential", "alice", "", "Sec-Fetch-Site", "same-origin", "Origin", "http://example.com")
		assert.Equal(t, http.StatusOK, w.Code, w.Body.String())
	})
}

func TestAllowedOriginsGetCORS(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const app = "https://app.example"
		r := newReplica(t, fake(t), nil, leasehttp.WithAllowedOrigins(app))
		w := serve(r.h, http.MethodOptions, "/credential", "", "", "Origin", app, "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "content-type, authorization")
		require.Equal(t, http.StatusNoContent, w.Code)
		assert.Equal(t, app, w.Header().Get("Access-Control-Allow-Origin"))
		assert.Equal(t, "true", w.Header().Get("Access-Control-Allow-Credentials"))
		assert.Equal(t, "POST", w.Header().Get("Access-Control-Allow-Methods"))
		assert.Equal(t, "content-type, authorization", w.Header().Get("Access-Control-Allow-Headers"))
		assert.Contains(t, w.Header().Values("Vary"), "Origin")

		w = serve(r.h, http.MethodPost, "/credential", "alice", "{}", "Sec-Fetch-Site", "cross-site", "Origin", app)
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		assert.Equal(t, app, w.Header().Get("Access-Control-Allow-Origin"))

		w = serve(r.h, http.MethodPost, "/credential", "alice", "", "Sec-Fetch-Site", "cross-site", "Origin", "https://other.example")
		assert.Equal(t, http.StatusForbidden, w.Code)
		assert.Empty(t, w.Header().Get("Access-Control-Allow-Origin"))
	})
}

func TestClientJS(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newReplica(t, fake(t), nil)
		w := serve(r.h, http.MethodGet, "/client.js", "", "")
		require.Equal(t, http.StatusOK, w.Code)
		assert.Equal(t, "text/javascript; charset=utf-8", w.Header().Get("Content-Type"))
		assert.Contains(t, w.Body.String(), "export async function connect(")
		etag := w.Header().Get("ETag")
		require.NotEmpty(t, etag)
		w = serve(r.h, http.MethodGet, "/client.js", "", "", "If-None-Match", etag)
		assert.Equal(t, http.StatusNotModified, w.Code)
		// Mounted with StripPrefix("/dg/") the path has no leading slash.
		w = serve(http.StripPrefix("/dg/", r.h), http.MethodGet, "/dg/client.js", "", "")
		assert.Equal(t, http.StatusOK, w.Code)
	})
}

func TestNewBadInput(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, err := lease.New(fake(t).Client())
		require.NoError(t, err)
		defer m.Close(context.Background())
		for _, tc := range []struct {
			name string
			new  func() (*leasehttp.Handler, error)
			says string
		}{
			{"nil manager", func() (*leasehttp.Handler, error) { return leasehttp.New(nil, identify) }, "needs a *lease.Manager"},
			{"nil identify", func() (*leasehttp.Handler, error) { return leasehttp.New(m, nil) }, "needs an identify function"},
			{"nil option", func() (*leasehttp.Handler, error) { return leasehttp.New(m, identify, nil) }, "nil Option"},
			{"short release key", func() (*leasehttp.Handler, error) {
				return leasehttp.New(m, identify, leasehttp.WithReleaseKey(make([]byte, 31)))
			}, "release key is 31 bytes; it must be at least 32"},
			{"origin with a path", func() (*leasehttp.Handler, error) {
				return leasehttp.New(m, identify, leasehttp.WithAllowedOrigins("https://app.example/page"))
			}, `allowed origin "https://app.example/page"`},
			{"wildcard origin", func() (*leasehttp.Handler, error) {
				return leasehttp.New(m, identify, leasehttp.WithAllowedOrigins("*"))
			}, `allowed origin "*"`},
		} {
			h, err := tc.new()
			assert.Nil(t, h, tc.name)
			assert.ErrorContains(t, err, tc.says, tc.name)
		}
	})
}
