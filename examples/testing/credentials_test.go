package credentials_test

// Tests for the handler NewHandler builds, against keys/keystest, the fake
// Deepgram. Each test shows one technique; copy what you need.
//
// The fake is created WithoutListener: it opens no socket and is reached
// in memory through srv.Client(), so it also works inside testing/synctest
// bubbles. The handler is mounted as in production (http.StripPrefix under
// /deepgram/) and called directly with httptest.NewRecorder, which works
// inside a bubble too.

import (
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	credentials "github.com/dglease/dglease/examples/testing"
	"github.com/dglease/dglease/keys"
	"github.com/dglease/dglease/keys/keystest"
	"github.com/dglease/dglease/lease"
	"github.com/dglease/dglease/lease/leasehttp"
)

// goleak checks that every Manager was closed and left no goroutine.
// TestMain unsets every DEEPGRAM_* variable first: the Deepgram SDK reads
// them, and a test must never be redirected to (or authenticate against)
// the real service.
func TestMain(m *testing.M) {
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "DEEPGRAM_") {
			os.Unsetenv(name)
		}
	}
	goleak.VerifyTestMain(m)
}

// releaseKey signs release handles in these tests. In production it is 32
// or more random bytes, kept secret and shared by every replica.
var releaseKey = []byte("test release key: 32+ bytes, never a real one")

// newManager returns a Manager on the fake, closed when the test ends.
func newManager(t *testing.T, srv *keystest.Server, opts ...lease.Option) *lease.Manager {
	t.Helper()
	m, err := lease.New(srv.Client(), opts...)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, m.Close(context.Background())) })
	return m
}

// signedIn stands in for your session lookup: the user is in a header.
func signedIn(r *http.Request) string { return r.Header.Get("X-User") }

// newHandler builds the handler on m, logging to the test's output, and
// mounts it under /deepgram/ as a server would.
func newHandler(t *testing.T, m *lease.Manager, opts ...leasehttp.Option) http.Handler {
	t.Helper()
	logTo := leasehttp.WithLogger(slog.New(slog.NewTextHandler(t.Output(), nil)))
	h, err := credentials.NewHandler(m, signedIn, append([]leasehttp.Option{logTo}, opts...)...)
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("/deepgram/", http.StripPrefix("/deepgram", h))
	return mux
}

// request is a request to route (under /deepgram) as user ("" for nobody).
func request(method, route, user, body string) *http.Request {
	r := httptest.NewRequest(method, "/deepgram"+route, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	if user != "" {
		r.Header.Set("X-User", user)
	}
	return r
}

func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

func post(h http.Handler, route, user, body string) *httptest.ResponseRecorder {
	return serve(h, request(http.MethodPost, route, user, body))
}

// credential is POST /credential's answer.
type credential struct {
	Secret      string    `json:"secret"`
	Subprotocol []string  `json:"subprotocol"`
	LeaseID     string    `json:"lease_id"`
	Expires     time.Time `json:"expires"`
	Revocable   bool      `json:"revocable"`
	Release     string    `json:"release"`
}

// issue asks h for a credential for user and requires one.
func issue(t *testing.T, h http.Handler, user string) credential {
	t.Helper()
	rec := post(h, "/credential", user, "")
	require.Equal(t, http.StatusOK, rec.Code, "body: %s", rec.Body)
	var c credential
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &c))
	return c
}

// release sends POST /release {"release": handle} as user.
func release(h http.Handler, user, handle string) *httptest.ResponseRecorder {
	body, _ := json.Marshal(map[string]string{"release": handle})
	return post(h, "/release", user, string(body))
}

// errorBody is every error's answer.
type errorBody struct {
	Error      string `json:"error"`
	RetryAfter int64  `json:"retry_after"`
}

func decodeError(t *testing.T, rec *httptest.ResponseRecorder) errorBody {
	t.Helper()
	assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	assert.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
	var e errorBody
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &e), "body: %s", rec.Body)
	require.NotEmpty(t, e.Error)
	return e
}

// keyOf finds the key behind a lease on the fake, by the marker dglease
// writes into every key it creates.
func keyOf(t *testing.T, srv *keystest.Server, leaseID string) keystest.KeyState {
	t.Helper()
	for _, k := range srv.Keys() {
		if m, err := lease.ParseMarker(k.Key.Comment, k.Key.Tags); err == nil && m.Lease == leaseID {
			return k
		}
	}
	t.Fatalf("no key on the fake for lease %s", leaseID)
	return keystest.KeyState{}
}

// Technique: look at the key on the fake. The browser gets a key that can
// only stream (usage:write) and that Deepgram itself expires shortly after
// the lease's TTL. The answer's JSON fields are the contract with clients
// in other languages, so the test pins them.
func TestCredentialIsShortLivedLeastPrivilegeKey(t *testing.T) {
	// Inside a synctest bubble the clock is exact, so times compare equal.
	synctest.Test(t, func(t *testing.T) {
		srv := keystest.NewServer(t, keystest.WithoutListener())
		h := newHandler(t, newManager(t, srv, lease.WithTTL(30*time.Second)))
		start := time.Now()

		rec := post(h, "/credential", "alice", "")

		require.Equal(t, http.StatusOK, rec.Code, "body: %s", rec.Body)
		assert.Equal(t, "no-store", rec.Header().Get("Cache-Control"), "a secret must not be cached")
		assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
		var fields map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &fields))
		assert.ElementsMatch(t, []string{"secret", "subprotocol", "lease_id", "expires", "revocable", "release"}, slices.Collect(maps.Keys(fields)))

		var cred credential
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &cred))
		assert.Len(t, cred.Secret, 40)
		assert.Equal(t, []string{"token", cred.Secret}, cred.Subprotocol, "what the page passes to new WebSocket")
		assert.True(t, cred.Revocable, "an API key, deleted on release")
		assert.True(t, cred.Expires.Equal(start.Add(30*time.Second)), "expires %v", cred.Expires)
		assert.NotEmpty(t, cred.Release)

		k := keyOf(t, srv, cred.LeaseID)
		assert.Equal(t, keystest.StatusActive, k.Status)
		assert.Equal(t, []string{"usage:write"}, k.Key.Scopes)
		assert.Equal(t, 30*time.Second+lease.DefaultExpiryMargin, k.Key.Expires.Sub(k.Key.Created), "TTL plus the expiry margin")

		// The user's key cannot manage keys: try it as a client of its own.
		_, err := srv.ClientFor(cred.Secret, srv.ProjectID()).List(t.Context())
		assert.ErrorIs(t, err, keys.ErrForbidden)
	})
}

// Technique: a table of requests the handler refuses before any key is
// created.
func TestRefusals(t *testing.T) {
	crossSite := func(r *http.Request) {
		r.Header.Set("Origin", "https://evil.example")
		r.Header.Set("Sec-Fetch-Site", "cross-site")
	}
	tests := []struct {
		name          string
		method, route string
		user, body    string
		header        func(*http.Request)
		closedManager bool
		wantStatus    int
		wantAllow     string
	}{
		{name: "nobody signed in", method: http.MethodPost, route: "/credential", wantStatus: http.StatusUnauthorized},
		{name: "wrong method", method: http.MethodGet, route: "/credential", user: "alice", wantStatus: http.StatusMethodNotAllowed, wantAllow: "POST, OPTIONS"},
		{name: "no such route", method: http.MethodPost, route: "/token", user: "alice", wantStatus: http.StatusNotFound},
		{name: "the client picks the user", method: http.MethodPost, route: "/credential", user: "alice", body: `{"user":"bob"}`, wantStatus: http.StatusBadRequest},
		{name: "another site's page", method: http.MethodPost, route: "/credential", user: "alice", header: crossSite, wantStatus: http.StatusForbidden},
		{name: "shutting down", method: http.MethodPost, route: "/credential", user: "alice", closedManager: true, wantStatus: http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := keystest.NewServer(t, keystest.WithoutListener())
			m := newManager(t, srv)
			if tt.closedManager {
				require.NoError(t, m.Close(t.Context()))
			}
			h := newHandler(t, m)
			r := request(tt.method, tt.route, tt.user, tt.body)
			if tt.header != nil {
				tt.header(r)
			}

			rec := serve(h, r)

			assert.Equal(t, tt.wantStatus, rec.Code, "body: %s", rec.Body)
			assert.Equal(t, tt.wantAllow, rec.Header().Get("Allow"))
			decodeError(t, rec)
			assert.Len(t, srv.LiveKeys(), 1, "only the fake's admin key")
		})
	}
}

// Technique: outside a synctest bubble the key is deleted on the Manager's
// deleter goroutines, after the release has answered. m.Flush waits until
// every lease ended so far has its key deleted (or given up on): call it
// before asserting on the fake, rather than sleeping or polling. Only the
// user the credential was issued to can release it, with the handle
// unchanged.
func TestReleaseDeletesTheKey(t *testing.T) {
	srv := keystest.NewServer(t, keystest.WithoutListener())
	m := newManager(t, srv)
	h := newHandler(t, m)
	cred := issue(t, h, "alice")
	forged := []byte(cred.Release)
	if i := len(forged) / 2; forged[i] == 'A' { // another base64url letter: other bytes
		forged[i] = 'B'
	} else {
		forged[i] = 'A'
	}

	assert.Equal(t, http.StatusForbidden, release(h, "mallory", cred.Release).Code, "not her credential")
	assert.Equal(t, http.StatusForbidden, release(h, "alice", string(forged)).Code, "altered handle")
	assert.Equal(t, http.StatusBadRequest, post(h, "/release", "alice", `{}`).Code, "no handle")
	require.NoError(t, m.Flush(t.Context()))
	assert.Equal(t, keystest.StatusActive, keyOf(t, srv, cred.LeaseID).Status, "refusals delete nothing")

	rec := release(h, "alice", cred.Release)
	require.Equal(t, http.StatusNoContent, rec.Code, "body: %s", rec.Body)
	assert.Empty(t, rec.Body.String())
	require.NoError(t, m.Flush(t.Context()))

	k := keyOf(t, srv, cred.LeaseID)
	assert.Equal(t, keystest.StatusDeleted, k.Status)
	assert.Equal(t, 1, k.Deletes)
	assert.Len(t, srv.LiveKeys(), 1, "only the fake's admin key")

	// A page that reports twice (a retried fetch) is answered the same.
	assert.Equal(t, http.StatusNoContent, release(h, "alice", cred.Release).Code)
	require.NoError(t, m.Flush(t.Context()))
	assert.Equal(t, 1, keyOf(t, srv, cred.LeaseID).Deletes, "deleted once")
}

// Technique: two replicas behind a load balancer are two Managers (and two
// handlers) on the same fake. The page's release may land on the replica
// that did not issue the credential: with the same release key it deletes
// the key at once, and the issuing replica finds it gone at the TTL,
// without an error; until then the lease counts in the issuer's caps.
// synctest lets the test run to the TTL without waiting.
func TestReleaseOnAnotherReplica(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := keystest.NewServer(t, keystest.WithoutListener())
		issuer := newManager(t, srv, lease.WithTTL(10*time.Second))
		other := newManager(t, srv, lease.WithTTL(10*time.Second))
		a := newHandler(t, issuer, leasehttp.WithReleaseKey(releaseKey))
		b := newHandler(t, other, leasehttp.WithReleaseKey(releaseKey))
		cred := issue(t, a, "alice")

		rec := release(b, "alice", cred.Release)
		require.Equal(t, http.StatusNoContent, rec.Code, "body: %s", rec.Body)
		synctest.Wait() // the other replica's deleter works in the background; no time passes

		k := keyOf(t, srv, cred.LeaseID)
		assert.Equal(t, keystest.StatusDeleted, k.Status)
		assert.Equal(t, k.Key.Created, k.DeletedAt, "deleted before any time passed")
		assert.Equal(t, uint64(1), other.Stats().ForeignReleases)
		assert.Equal(t, 1, issuer.Stats().Live, "the issuer cannot know: the lease counts in its caps until the TTL")

		time.Sleep(10 * time.Second) // the issuer's TTL ends the lease
		synctest.Wait()
		assert.Zero(t, issuer.Stats().Live)
		assert.Equal(t, uint64(1), issuer.Stats().AlreadyDeleted, "found gone, not an error")
		assert.Zero(t, issuer.Stats().DeleteFailed)
		assert.Equal(t, 1, keyOf(t, srv, cred.LeaseID).Deletes)
	})
}

// Technique: the same two replicas without a shared release key. Each
// signs with its own random key, so the other refuses the handle (and says
// what to set), and the key lives until its TTL.
func TestReleaseOnAnotherReplicaNeedsASharedKey(t *testing.T) {
	srv := keystest.NewServer(t, keystest.WithoutListener())
	issuer := newManager(t, srv)
	other := newManager(t, srv)
	cred := issue(t, newHandler(t, issuer), "alice")

	rec := release(newHandler(t, other), "alice", cred.Release)

	assert.Equal(t, http.StatusForbidden, rec.Code)
	assert.Contains(t, decodeError(t, rec).Error, "WithReleaseKey")
	require.NoError(t, other.Flush(t.Context()))
	assert.Equal(t, keystest.StatusActive, keyOf(t, srv, cred.LeaseID).Status)
}

// Technique: fault injection. srv.Fail makes the next create answer as a
// failing Deepgram would. An outage (503) is a 502 for the browser, whose
// body says neither Deepgram's answer nor any secret; Deepgram's own rate
// limit (429) is a refusal like the Manager's, so the browser gets 429 with
// Deepgram's Retry-After. Either way nothing is created, and the next
// request works again.
func TestDeepgramFailures(t *testing.T) {
	tests := []struct {
		name           string
		fault          keystest.Fault
		wantStatus     int
		wantRetryAfter string
	}{
		{"outage", keystest.Fault{Status: 503}, http.StatusBadGateway, ""},
		{"rate limited", keystest.Fault{Status: 429, RetryAfter: 3 * time.Second}, http.StatusTooManyRequests, "3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := keystest.NewServer(t, keystest.WithoutListener())
			h := newHandler(t, newManager(t, srv))
			srv.Fail(keystest.OpCreate, tt.fault)

			rec := post(h, "/credential", "alice", "")

			assert.Equal(t, tt.wantStatus, rec.Code)
			assert.Equal(t, tt.wantRetryAfter, rec.Header().Get("Retry-After"))
			decodeError(t, rec)
			assert.NotContains(t, rec.Body.String(), strconv.Itoa(tt.fault.Status), "Deepgram's answer stays in the server's logs")
			noSecret(t, "the answer", rec.Body.String(), srv.AdminKey())
			assert.Len(t, srv.LiveKeys(), 1, "only the fake's admin key")

			issue(t, h, "alice") // the fault answered one call
		})
	}
}

// Technique: the Manager's rate limit is per user; a refused request gets
// 429 with Retry-After (and retry_after in the body, which client.js reads),
// and no call reaches Deepgram. Inside a synctest bubble the wait is exact,
// so the test sees it rounded up.
func TestOverRateLimitIs429WithRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := keystest.NewServer(t, keystest.WithoutListener())
		h := newHandler(t, newManager(t, srv, lease.WithRateLimit(time.Minute, 1)))

		issue(t, h, "alice")
		creates := len(srv.Requests())
		time.Sleep(500 * time.Millisecond) // 59.5 s left to wait
		rec := post(h, "/credential", "alice", "")

		assert.Equal(t, http.StatusTooManyRequests, rec.Code)
		assert.Equal(t, "60", rec.Header().Get("Retry-After"), "59.5 s, rounded up")
		assert.Equal(t, int64(60), decodeError(t, rec).RetryAfter)
		assert.Len(t, srv.Requests(), creates, "refused before any call")
		issue(t, h, "bob") // another user is not limited
	})
}

// Technique: testing/synctest. Inside the bubble time is fake: time.Sleep
// returns at once once every goroutine is blocked, and the fake Deepgram's
// clock follows it. Create the fake inside the bubble, WithoutListener.
// Here the page never reports back: the lease's TTL deletes the key.
func TestTTLDeletesANeverReleasedKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := keystest.NewServer(t, keystest.WithoutListener())
		h := newHandler(t, newManager(t, srv, lease.WithTTL(10*time.Second)))
		cred := issue(t, h, "alice")

		time.Sleep(10*time.Second - time.Nanosecond)
		synctest.Wait() // let the Manager's deleter finish whatever it started
		assert.Equal(t, keystest.StatusActive, keyOf(t, srv, cred.LeaseID).Status, "live until the TTL")

		time.Sleep(time.Nanosecond)
		synctest.Wait()
		k := keyOf(t, srv, cred.LeaseID)
		assert.Equal(t, keystest.StatusDeleted, k.Status)
		assert.Equal(t, 10*time.Second, k.DeletedAt.Sub(k.Key.Created), "deleted right at the TTL")
		assert.Equal(t, 1, k.Deletes)

		// A release after the TTL has nothing left to delete.
		assert.Equal(t, http.StatusForbidden, release(h, "alice", cred.Release).Code)
	})
}

// Technique: log to a buffer and search it. The Manager's hooks log every
// event (lease.LogHooks) and the handler logs what it does not tell
// clients (the cause of a 502; at debug level, why identify refused).
// Neither the handed-out secret, the admin key nor the release key may
// appear, while the key IDs do. The deleter logs from its own goroutines,
// so the buffer takes a lock, and m.Flush waits for it before reading.
func TestNoSecretInLogs(t *testing.T) {
	srv := keystest.NewServer(t, keystest.WithoutListener())
	var logs lockedBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m := newManager(t, srv, lease.WithHooks(lease.LogHooks(logger)))
	h := newHandler(t, m, leasehttp.WithLogger(logger), leasehttp.WithReleaseKey(releaseKey))

	cred := issue(t, h, "alice")
	require.Equal(t, http.StatusNoContent, release(h, "alice", cred.Release).Code)
	require.Equal(t, http.StatusUnauthorized, post(h, "/credential", "", "").Code)
	srv.Fail(keystest.OpCreate, keystest.Fault{Status: 503})
	require.Equal(t, http.StatusBadGateway, post(h, "/credential", "alice", "").Code)
	require.NoError(t, m.Flush(t.Context()))

	out := logs.String()
	assert.Contains(t, out, `"msg":"lease acquired"`)
	assert.Contains(t, out, `"msg":"lease ended"`)
	assert.Contains(t, out, keyOf(t, srv, cred.LeaseID).Key.ID)
	assert.Contains(t, out, `"msg":"lease error"`)
	assert.Contains(t, out, `"msg":"leasehttp: could not issue a credential"`)
	assert.Contains(t, out, `"msg":"leasehttp: identify refused a request"`)
	noSecret(t, "the log", out, cred.Secret, srv.AdminKey(), string(releaseKey))
}

// lockedBuffer collects log lines written from several goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// noSecret fails t for each secret found in text. Unlike assert.NotContains
// it prints neither the text nor the secret, only where and how the secret
// begins: a failing check must not leak what it guards.
func noSecret(t *testing.T, what, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if i := strings.Index(text, s); s != "" && i >= 0 {
			t.Errorf("%s holds a secret (%.4s…, %d bytes) at byte %d; the text is not shown because it holds the secret", what, s, len(s), i)
		}
	}
}
