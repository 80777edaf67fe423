package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/internal/testenv"
	"github.com/dglease/dglease/keys/keystest"
	"github.com/dglease/dglease/lease"
)

// The handler tests run in testing/synctest bubbles against a socket-less
// fake: time only passes when every goroutine waits, so "no time passed"
// proves it was Release, not the TTL, that deleted a key.

func TestCredentialIssued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		b := h.visitor()
		assert.True(t, b.cookie.HttpOnly, "session cookie HttpOnly")
		assert.Equal(t, http.SameSiteStrictMode, b.cookie.SameSite, "session cookie SameSite")

		res := b.do("POST", credentialPath, nil)
		require.Equal(t, http.StatusOK, res.StatusCode)
		assert.Equal(t, "no-store", res.Header.Get("Cache-Control"))
		assert.Equal(t, "application/json", res.Header.Get("Content-Type"))
		assert.NotEmpty(t, res.Header.Get("Content-Security-Policy"), "the demo's headers on leasehttp's answers too")

		var c credential
		decode(t, res, &c)
		h.sawSecret(c.Secret)
		assert.Regexp(t, "^[0-9a-f]{40}$", c.Secret)
		assert.Equal(t, []string{"token", c.Secret}, c.Subprotocol)
		assert.True(t, c.Revocable)
		assert.NotEmpty(t, c.Release)
		assert.True(t, time.Now().Add(10*time.Second).Equal(c.Expires), "expires = now + TTL, got %v", c.Expires)
		assert.Regexp(t, "^[0-9a-f]{16}$", c.LeaseID)

		st := b.status(c.LeaseID)
		assert.Equal(t, keystest.StatusActive, h.keyStatus(st.KeyID))
		want := status{LeaseID: c.LeaseID, KeyID: st.KeyID, Lease: "live", Ends: c.Expires, Credential: "active", Source: "deepgram", Expires: c.Expires.Add(lease.DefaultExpiryMargin)}
		assert.Equal(t, want, st, "the key works until the lease's TTL plus the expiry margin")
	})
}

// TestStatusByLeaseID: GET /api/status/{lease_id} answers each of the
// visitor's leases by its ID, each as it is; without an ID there is no
// status to ask for.
func TestStatusByLeaseID(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		alice, bob := h.visitor(), h.visitor()
		first := alice.credential()
		second := alice.credential()
		bob.credential()
		assert.Equal(t, first.LeaseID, alice.status(first.LeaseID).LeaseID)
		assert.Equal(t, second.LeaseID, alice.status(second.LeaseID).LeaseID)

		require.Equal(t, http.StatusNoContent, alice.release(second.Release))
		synctest.Wait()
		assert.Equal(t, "released", alice.status(second.LeaseID).Lease)
		assert.Equal(t, "live", alice.status(first.LeaseID).Lease, "releasing one lease leaves the other")
		res := bob.do("GET", "/api/status/"+first.LeaseID, nil)
		assert.Equal(t, http.StatusNotFound, res.StatusCode, "alice's lease, asked for by bob")

		for _, path := range []string{"/api/status", "/api/status/"} {
			res := alice.do("GET", path, nil)
			assert.Equal(t, http.StatusNotFound, res.StatusCode, "%s: a lease ID is required", path)
		}
	})
}

func TestReleaseDeletesKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		b := h.visitor()
		c := b.credential()
		keyID := b.keyID(c.LeaseID)
		start := time.Now()

		res := b.do("POST", releasePath, map[string]string{"release": c.Release})
		require.Equal(t, http.StatusNoContent, res.StatusCode)

		synctest.Wait() // the deleter and the hooks have done their work
		assert.Equal(t, time.Duration(0), time.Since(start), "no time passed: the TTL did not do it")
		assert.Equal(t, keystest.StatusDeleted, h.keyStatus(keyID))
		fk, _ := h.fake.Key(keyID)
		assert.Equal(t, 1, fk.Deletes, "API deletes")
		assert.Zero(t, h.s.leases.Stats().Live, "the lease has ended")

		st := b.status(c.LeaseID)
		assert.Equal(t, "released", st.Lease)
		assert.Equal(t, "deleted", st.Credential)
		assert.Equal(t, "deepgram", st.Source)

		// Releasing again is harmless.
		assert.Equal(t, http.StatusNoContent, b.release(c.Release))
		synctest.Wait()
		fk, _ = h.fake.Key(keyID)
		assert.Equal(t, 1, fk.Deletes, "API deletes")
	})
}

func TestTTLDeletesUnreleasedKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		b := h.visitor()
		c := b.credential()
		keyID := b.keyID(c.LeaseID)

		time.Sleep(10*time.Second - time.Nanosecond)
		synctest.Wait()
		assert.Equal(t, keystest.StatusActive, h.keyStatus(keyID), "before the TTL")

		time.Sleep(time.Nanosecond)
		synctest.Wait()
		assert.Equal(t, keystest.StatusDeleted, h.keyStatus(keyID), "at the TTL")
		st := b.status(c.LeaseID)
		assert.Equal(t, "expired", st.Lease)
		assert.Equal(t, "deleted", st.Credential)
		assert.Zero(t, h.s.leases.Stats().Live)
	})
}

// errorAnswer is the body of every error answer, leasehttp's and the
// demo's.
type errorAnswer struct {
	Error      string `json:"error"`
	RetryAfter int    `json:"retry_after"`
}

func TestRateLimitAnswers429(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(c *config) { c.RateEvery, c.Burst = 90*time.Second, 1 })
		b := h.visitor()
		b.credential()

		time.Sleep(500 * time.Millisecond) // 89.5s to wait: rounded up to 90
		res := b.do("POST", credentialPath, nil)
		require.Equal(t, http.StatusTooManyRequests, res.StatusCode)
		assert.Equal(t, "90", res.Header.Get("Retry-After"))
		assert.Equal(t, "no-store", res.Header.Get("Cache-Control"))
		var got errorAnswer
		decode(t, res, &got)
		assert.Equal(t, 90, got.RetryAfter)
		assert.Contains(t, got.Error, "retry in 90 s")

		// The limit is per visitor.
		h.visitor().credential()
	})
}

func TestVisitorCannotTouchAnotherVisitorsLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		alice, mallory := h.visitor(), h.visitor()
		c := alice.credential()
		keyID := alice.keyID(c.LeaseID)
		anonymous := &browser{h: h}

		assert.Equal(t, http.StatusForbidden, mallory.release(c.Release), "release with alice's handle")
		assert.Equal(t, http.StatusUnauthorized, anonymous.release(c.Release), "release without a session")
		for _, b := range []*browser{mallory, anonymous} {
			res := b.do("GET", "/api/status/"+c.LeaseID, nil)
			assert.Equal(t, http.StatusNotFound, res.StatusCode, "alice's lease's status")
		}
		synctest.Wait()
		assert.Equal(t, keystest.StatusActive, h.keyStatus(keyID))
		assert.Equal(t, "live", alice.status(c.LeaseID).Lease)
	})
}

// TestNoSessionAnswers401: a credential asked for without the session
// cookie (the page was not loaded, or the cookie was lost) is refused with
// 401 and a message that says what to do.
func TestNoSessionAnswers401(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		for _, cookie := range []*http.Cookie{nil, {Name: sessionCookie, Value: "not-a-token"}} {
			res := (&browser{h: h, cookie: cookie}).do("POST", credentialPath, nil)
			require.Equal(t, http.StatusUnauthorized, res.StatusCode)
			var got errorAnswer
			decode(t, res, &got)
			assert.Contains(t, got.Error, "reload the page")
		}
		synctest.Wait()
		assert.Len(t, h.fake.LiveKeys(), 1, "only the admin key: nothing was issued")
	})
}

func TestRequestsRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		b := h.visitor()
		c := b.credential()
		tests := []struct {
			name         string
			method, path string
			body         any
			want         int
		}{
			{"POST status", "POST", "/api/status/" + c.LeaseID, nil, http.StatusMethodNotAllowed},
			{"release without body", "POST", releasePath, nil, http.StatusBadRequest},
			{"release by lease ID", "POST", releasePath, map[string]string{"lease_id": c.LeaseID}, http.StatusBadRequest},
			{"status of unknown lease", "GET", "/api/status/nope", nil, http.StatusNotFound},
			{"unknown API route", "GET", "/api/deepgram/nope", nil, http.StatusNotFound},
			{"unknown page", "GET", "/nope", nil, http.StatusNotFound},
		}
		for _, tt := range tests {
			res := b.do(tt.method, tt.path, tt.body)
			assert.Equal(t, tt.want, res.StatusCode, tt.name)
		}
		synctest.Wait()
		assert.Equal(t, "live", b.status(c.LeaseID).Lease, "nothing released the lease")
		assert.Len(t, h.fake.LiveKeys(), 2, "the admin key and the one issued: nothing else was")
	})
}

func TestPageAndAssets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		b := h.visitor()
		tests := []struct{ path, contentType, contains string }{
			{"/", "text/html", `<script type="module" src="/static/app.js">`},
			{"/static/app.js", "text/javascript", "from '/api/deepgram/client.js'"},
			{"/static/style.css", "text/css", ".timeline"},
			{"/api/deepgram/client.js", "text/javascript", "export async function connect("},
		}
		for _, tt := range tests {
			res := b.do("GET", tt.path, nil)
			require.Equal(t, http.StatusOK, res.StatusCode, tt.path)
			assert.Contains(t, res.Header.Get("Content-Type"), tt.contentType, tt.path)
			assert.Contains(t, readAll(res), tt.contains, tt.path)
			// The page's module and the client.js it imports are scripts
			// from 'self'; it connects to itself and the listen host only.
			csp := res.Header.Get("Content-Security-Policy")
			assert.Contains(t, csp, "default-src 'self';", tt.path)
			assert.Contains(t, csp, "connect-src 'self' ws://listen.invalid;", tt.path)
			assert.Equal(t, "nosniff", res.Header.Get("X-Content-Type-Options"), tt.path)
		}

		res := b.do("GET", "/api/about", nil)
		var got about
		decode(t, res, &got)
		assert.Equal(t, about{Backend: "the fake", Kind: "token", TTLSeconds: 10, ListenURL: testListenURL, Usage: true}, got)
	})
}

// TestDeepgramRateLimitAnswers429: Deepgram's own 429 on the create is a
// denial like the Manager's limits, answered 429 with its Retry-After, not
// a 502.
func TestDeepgramRateLimitAnswers429(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		b := h.visitor()
		h.fake.Fail(keystest.OpCreate, keystest.Fault{Status: http.StatusTooManyRequests, RetryAfter: 7 * time.Second})

		res := b.do("POST", credentialPath, nil)
		require.Equal(t, http.StatusTooManyRequests, res.StatusCode)
		assert.Equal(t, "7", res.Header.Get("Retry-After"))
		var got errorAnswer
		decode(t, res, &got)
		assert.Equal(t, 7, got.RetryAfter)
		assert.Contains(t, got.Error, "Deepgram's rate limit")
		assert.Contains(t, got.Error, "retry in 7 s")
		assert.Len(t, h.fake.LiveKeys(), 1, "only the admin key: nothing was issued")

		time.Sleep(7 * time.Second)
		b.credential() // the fault answered one call
	})
}

func TestCreateFailureAnswers502(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		b := h.visitor()
		h.fake.Fail(keystest.OpCreate, keystest.Fault{Status: http.StatusServiceUnavailable})

		res := b.do("POST", credentialPath, nil)
		require.Equal(t, http.StatusBadGateway, res.StatusCode)
		assert.Equal(t, "no-store", res.Header.Get("Cache-Control"))
		body := readAll(res)
		var got errorAnswer
		require.NoError(t, json.Unmarshal([]byte(body), &got))
		assert.Equal(t, "Deepgram did not issue a credential; try again later", got.Error)
		testenv.NoSecret(t, "the 502 answer", body, h.fake.AdminKey())

		synctest.Wait()
		// The Manager's LogHooks log the failure once, and leasehttp the
		// cause of its 502. (Counts only: a failure message must not show
		// a log that may hold a secret.)
		logs := h.logs.String()
		assert.Equal(t, 2, strings.Count(logs, "level=ERROR"), "error lines in the log")
		assert.Equal(t, 1, strings.Count(logs, `level=ERROR msg="lease error" lease.event=error lease.user=`+visitorID(b.cookie.Value)+" "), "lease errors for the visitor")
		assert.Equal(t, 1, strings.Count(logs, `level=ERROR msg="leasehttp: could not issue a credential"`), "the 502's cause")
		assert.Equal(t, 1, strings.Count(logs, " lease.op=create "), "create failures in the log")
	})
}

func TestGrantTokens(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(c *config) { c.Grant = true })
		b := h.visitor()
		c := b.credential()
		assert.Equal(t, "bearer", c.Subprotocol[0])
		assert.Equal(t, 3, strings.Count(c.Secret, ".")+1, "a JWT")
		assert.False(t, c.Revocable, "grant tokens cannot be deleted")
		assert.Empty(t, b.status(c.LeaseID).KeyID, "a grant token has no key ID")

		require.Equal(t, http.StatusNoContent, b.release(c.Release))
		synctest.Wait()
		st := b.status(c.LeaseID)
		assert.Equal(t, "released", st.Lease)
		assert.Equal(t, "active", st.Credential, "a released grant token works until it expires")
		assert.Equal(t, "token expiry", st.Source)
		assert.Equal(t, c.Expires, st.Expires, "the token's own expiry")

		time.Sleep(time.Until(st.Expires))
		assert.Equal(t, "expired", b.status(c.LeaseID).Credential)
	})
}

// TestStatusFromLeaseRecords: without KeyStatus, as against the real
// Deepgram, the status comes from the backend's own records: the lease
// live, the deletion requested or failed, the key past its expiry.
func TestStatusFromLeaseRecords(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(c *config) { c.KeyStatus = nil })
		b := h.visitor()
		deleted, failed := b.credential(), b.credential()
		deletedKey, failedKey := b.keyID(deleted.LeaseID), b.keyID(failed.LeaseID)
		serverExpires := deleted.Expires.Add(lease.DefaultExpiryMargin)
		want := status{LeaseID: deleted.LeaseID, KeyID: deletedKey, Lease: "live", Ends: deleted.Expires, Credential: "active", Source: "lease", Expires: serverExpires}
		assert.Equal(t, want, b.status(deleted.LeaseID))

		require.Equal(t, http.StatusNoContent, b.release(deleted.Release))
		synctest.Wait()
		require.Equal(t, keystest.StatusDeleted, h.keyStatus(deletedKey))
		want.Lease, want.Credential = "released", "deletion requested"
		assert.Equal(t, want, b.status(deleted.LeaseID), "the backend does not know the deletion worked")

		h.fake.Fail(keystest.OpDelete, keystest.Fault{Status: http.StatusForbidden}) // not retried
		require.Equal(t, http.StatusNoContent, b.release(failed.Release))
		synctest.Wait()
		require.Equal(t, keystest.StatusActive, h.keyStatus(failedKey))
		assert.Equal(t, status{LeaseID: failed.LeaseID, KeyID: failedKey, Lease: "released", Ends: failed.Expires, Credential: "deletion failed", Source: "lease", Expires: serverExpires},
			b.status(failed.LeaseID))

		time.Sleep(time.Until(serverExpires) - time.Nanosecond)
		assert.Equal(t, "deletion requested", b.status(deleted.LeaseID).Credential, "just before the key expires")
		time.Sleep(time.Nanosecond)
		assert.Equal(t, "expired", b.status(deleted.LeaseID).Credential)
		assert.Equal(t, "deletion failed", b.status(failed.LeaseID).Credential, "still: the key was never deleted")

		// Sweep deletes the expired key the deleter gave up on, so that
		// Close (at the end of the test) has nothing left to report.
		n, err := h.s.Sweep(t.Context())
		require.NoError(t, err)
		assert.Equal(t, 1, n, "keys swept")
	})
}

// TestServerExpiry: the status's Expires is when Deepgram stops accepting
// the key, as the fake records it (the OnAcquire event's ServerExpires),
// also for a TTL that is not whole seconds.
func TestServerExpiry(t *testing.T) {
	for _, ttl := range []time.Duration{10 * time.Second, 2500 * time.Millisecond} {
		synctest.Test(t, func(t *testing.T) {
			h := newHarness(t, func(c *config) { c.TTL = ttl })
			b := h.visitor()
			c := b.credential()
			st := b.status(c.LeaseID)
			k, ok := h.fake.Key(st.KeyID)
			require.True(t, ok)
			assert.True(t, k.Key.Expires.Equal(st.Expires), "TTL %v: status says the key expires at %v, the fake at %v", ttl, st.Expires, k.Key.Expires)
			assert.True(t, c.Expires.Equal(st.Ends), "TTL %v: status says the lease ends at %v, the credential at %v", ttl, st.Ends, c.Expires)
		})
	}
}

func TestEndedLeaseForgotten(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		b := h.visitor()
		c := b.credential()
		require.Equal(t, http.StatusNoContent, b.release(c.Release))
		synctest.Wait()
		assert.Equal(t, "released", b.status(c.LeaseID).Lease, "still known after it ended")

		time.Sleep(endedRetention + time.Second)
		h.visitor().credential() // issuing prunes the ledger
		synctest.Wait()
		res := b.do("GET", "/api/status/"+c.LeaseID, nil)
		assert.Equal(t, http.StatusNotFound, res.StatusCode, "forgotten after endedRetention")
	})
}

// TestLedgerBounded: past maxEnded ended leases, the oldest are forgotten
// before endedRetention; live ones are kept.
func TestLedgerBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lg := newLedger(2)
		hooks := lg.hooks()
		for _, id := range []string{"a", "b", "c", "live"} {
			hooks.OnAcquire(lease.Event{LeaseID: id, User: "v-" + id, Expires: time.Now().Add(time.Minute)})
		}
		for _, id := range []string{"a", "b", "c"} {
			hooks.OnRelease(lease.Event{LeaseID: id, User: "v-" + id, Reason: lease.ReasonReleased})
		}
		for _, tt := range []struct {
			id   string
			want bool
		}{{"a", false}, {"b", true}, {"c", true}, {"live", true}} {
			_, ok := lg.lookup("v-"+tt.id, tt.id)
			assert.Equal(t, tt.want, ok, "lease %s kept", tt.id)
		}
		assert.Len(t, lg.byID, 3)
	})
}
