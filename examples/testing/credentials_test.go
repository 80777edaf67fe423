package credentials_test

// Tests for CredentialHandler against keys/keystest, the fake Deepgram.
// Each test shows one technique; copy what you need.
//
// The fake is created WithoutListener: it opens no socket and is reached
// in memory through srv.Client(), so it also works inside testing/synctest
// bubbles. The handler is called directly with httptest.NewRecorder.

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
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

// newManager returns a Manager on the fake, closed when the test ends.
func newManager(t *testing.T, srv *keystest.Server, opts ...lease.Option) *lease.Manager {
	t.Helper()
	m, err := lease.New(srv.Client(), opts...)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, m.Close(context.Background())) })
	return m
}

// signedIn stands in for your session lookup: the user is in a header.
func signedIn(r *http.Request) (string, bool) {
	user := r.Header.Get("X-User")
	return user, user != ""
}

// do sends one request to h as user ("" for nobody).
func do(h http.Handler, method, target, user string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, nil)
	if user != "" {
		r.Header.Set("X-User", user)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

func decode(t *testing.T, rec *httptest.ResponseRecorder) credentials.Credential {
	t.Helper()
	require.Equal(t, http.StatusOK, rec.Code, "body: %s", rec.Body)
	var c credentials.Credential
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &c))
	return c
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
// the lease's TTL.
func TestPostIssuesShortLivedLeastPrivilegeKey(t *testing.T) {
	// Inside a synctest bubble the clock is exact, so times compare equal.
	synctest.Test(t, func(t *testing.T) {
		srv := keystest.NewServer(t, keystest.WithoutListener())
		h := credentials.CredentialHandler(newManager(t, srv, lease.WithTTL(30*time.Second)), signedIn)
		start := time.Now()

		rec := do(h, http.MethodPost, "/credential", "alice")

		cred := decode(t, rec)
		assert.Equal(t, "no-store", rec.Header().Get("Cache-Control"), "a secret must not be cached")
		assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
		assert.Len(t, cred.Secret, 40)
		assert.True(t, cred.Expires.Equal(start.Add(30*time.Second)), "expires %v", cred.Expires)

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
	tests := []struct {
		name          string
		method, user  string
		closedManager bool
		wantStatus    int
	}{
		{name: "nobody signed in", method: http.MethodPost, wantStatus: http.StatusUnauthorized},
		{name: "wrong method", method: http.MethodGet, user: "alice", wantStatus: http.StatusMethodNotAllowed},
		{name: "shutting down", method: http.MethodPost, user: "alice", closedManager: true, wantStatus: http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := keystest.NewServer(t, keystest.WithoutListener())
			m := newManager(t, srv)
			if tt.closedManager {
				require.NoError(t, m.Close(t.Context()))
			}
			h := credentials.CredentialHandler(m, signedIn)

			rec := do(h, tt.method, "/credential", tt.user)

			assert.Equal(t, tt.wantStatus, rec.Code, "body: %s", rec.Body)
			assert.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
			assert.JSONEq(t, `{"error":"`+errorText(t, rec)+`"}`, rec.Body.String())
			assert.Len(t, srv.LiveKeys(), 1, "only the fake's admin key")
		})
	}
}

func errorText(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var body struct{ Error string }
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
	require.NotEmpty(t, body.Error)
	return body.Error
}

// Technique: fault injection. srv.Fail makes the next create answer as a
// failing Deepgram would. An outage (503) is a 502 for the browser; Deepgram's
// own rate limit (429) is a denial like the Manager's, so the browser gets
// 429 with Deepgram's Retry-After. Either way nothing is created, and the
// next request works again.
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
			h := credentials.CredentialHandler(newManager(t, srv), signedIn)
			srv.Fail(keystest.OpCreate, tt.fault)

			rec := do(h, http.MethodPost, "/credential", "alice")

			assert.Equal(t, tt.wantStatus, rec.Code)
			assert.Equal(t, tt.wantRetryAfter, rec.Header().Get("Retry-After"))
			assert.NotContains(t, rec.Body.String(), strconv.Itoa(tt.fault.Status), "Deepgram's answer stays in the server's logs")
			assert.Len(t, srv.LiveKeys(), 1, "only the fake's admin key")

			decode(t, do(h, http.MethodPost, "/credential", "alice")) // the fault answered one call
		})
	}
}

// Technique: the Manager's rate limit is per user; a denied request gets
// 429 with Retry-After, and no call reaches Deepgram. Inside a synctest
// bubble the wait is exact, so the test sees it rounded up.
func TestOverRateLimitIs429WithRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := keystest.NewServer(t, keystest.WithoutListener())
		h := credentials.CredentialHandler(newManager(t, srv, lease.WithRateLimit(time.Minute, 1)), signedIn)

		decode(t, do(h, http.MethodPost, "/credential", "alice"))
		creates := len(srv.Requests())
		time.Sleep(500 * time.Millisecond) // 59.5 s left to wait
		rec := do(h, http.MethodPost, "/credential", "alice")

		assert.Equal(t, http.StatusTooManyRequests, rec.Code)
		assert.Equal(t, "60", rec.Header().Get("Retry-After"), "59.5 s, rounded up")
		assert.Len(t, srv.Requests(), creates, "denied before any call")
		decode(t, do(h, http.MethodPost, "/credential", "bob")) // another user is not limited
	})
}

// Technique: testing/synctest. Inside the bubble time is fake: time.Sleep
// returns at once once every goroutine is blocked, and the fake Deepgram's
// clock follows it. Create the fake inside the bubble, WithoutListener.
func TestTTLDeletesTheKeyWithoutWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := keystest.NewServer(t, keystest.WithoutListener())
		h := credentials.CredentialHandler(newManager(t, srv, lease.WithTTL(10*time.Second)), signedIn)
		cred := decode(t, do(h, http.MethodPost, "/credential", "alice"))

		time.Sleep(10*time.Second - time.Nanosecond)
		synctest.Wait() // let the Manager's deleter finish whatever it started
		assert.Equal(t, keystest.StatusActive, keyOf(t, srv, cred.LeaseID).Status, "live until the TTL")

		time.Sleep(time.Nanosecond)
		synctest.Wait()
		k := keyOf(t, srv, cred.LeaseID)
		assert.Equal(t, keystest.StatusDeleted, k.Status)
		assert.Equal(t, 10*time.Second, k.DeletedAt.Sub(k.Key.Created), "deleted right at the TTL")
		assert.Equal(t, 1, k.Deletes)
	})
}

// Technique: synctest again, to see that a DELETE from the browser (its
// socket is open) deletes the key at once, and only the owner's does.
func TestDeleteReleasesTheKeyAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := keystest.NewServer(t, keystest.WithoutListener())
		h := credentials.CredentialHandler(newManager(t, srv), signedIn)
		cred := decode(t, do(h, http.MethodPost, "/credential", "alice"))
		target := "/credential?lease_id=" + cred.LeaseID

		assert.Equal(t, http.StatusNotFound, do(h, http.MethodDelete, target, "mallory").Code, "not her lease")
		assert.Equal(t, http.StatusNoContent, do(h, http.MethodDelete, target, "alice").Code)
		assert.Equal(t, http.StatusNotFound, do(h, http.MethodDelete, target, "alice").Code, "already released")

		synctest.Wait() // the deleter works in the background; no time passes
		k := keyOf(t, srv, cred.LeaseID)
		assert.Equal(t, keystest.StatusDeleted, k.Status)
		assert.Equal(t, k.Key.Created, k.DeletedAt, "deleted before any time passed")
	})
}

// Technique: outside a synctest bubble the key is deleted on the Manager's
// deleter goroutines, after Release has returned. m.Flush waits until every
// lease ended so far has its key deleted (or given up on): call it before
// asserting on the fake, rather than sleeping or polling.
func TestFlushWaitsForTheDeletion(t *testing.T) {
	srv := keystest.NewServer(t, keystest.WithoutListener())
	m := newManager(t, srv)
	h := credentials.CredentialHandler(m, signedIn)
	cred := decode(t, do(h, http.MethodPost, "/credential", "alice"))
	require.Equal(t, http.StatusNoContent, do(h, http.MethodDelete, "/credential?lease_id="+cred.LeaseID, "alice").Code)

	require.NoError(t, m.Flush(t.Context()))

	k := keyOf(t, srv, cred.LeaseID)
	assert.Equal(t, keystest.StatusDeleted, k.Status)
	assert.Equal(t, 1, k.Deletes)
	assert.Len(t, srv.LiveKeys(), 1, "only the fake's admin key")
}

// Technique: log to a buffer and search it. The Manager's hooks log every
// event (lease.LogHooks); neither the handed-out secret nor the admin key
// may appear, while the key IDs do. Hooks run before the call that caused
// the event returns, so the log is complete as soon as the requests are.
func TestNoSecretInLogs(t *testing.T) {
	srv := keystest.NewServer(t, keystest.WithoutListener())
	var logs bytes.Buffer
	m := newManager(t, srv, lease.WithHooks(lease.LogHooks(slog.New(slog.NewJSONHandler(&logs, nil)))))
	h := credentials.CredentialHandler(m, signedIn)

	cred := decode(t, do(h, http.MethodPost, "/credential", "alice"))
	require.Equal(t, http.StatusNoContent, do(h, http.MethodDelete, "/credential?lease_id="+cred.LeaseID, "alice").Code)
	srv.Fail(keystest.OpCreate, keystest.Fault{Status: 503})
	require.Equal(t, http.StatusBadGateway, do(h, http.MethodPost, "/credential", "alice").Code)

	out := logs.String()
	assert.Contains(t, out, `"msg":"lease acquired"`)
	assert.Contains(t, out, keyOf(t, srv, cred.LeaseID).Key.ID)
	assert.Contains(t, out, `"msg":"lease error"`)
	noSecret(t, "the log", out, cred.Secret, srv.AdminKey())
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
