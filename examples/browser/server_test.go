package main

import (
	"encoding/json"
	"net/http"
	"strconv"
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

		res := b.do("POST", "/api/credential", nil, nil)
		require.Equal(t, http.StatusOK, res.StatusCode)
		assert.Equal(t, "no-store", res.Header.Get("Cache-Control"))
		assert.Equal(t, "application/json", res.Header.Get("Content-Type"))

		var got map[string]any
		decode(t, res, &got)
		fields := make([]string, 0, len(got))
		for k := range got {
			fields = append(fields, k)
		}
		assert.ElementsMatch(t, []string{"subprotocol", "expires", "lease_id", "key_id", "listen_url"}, fields)
		assert.Equal(t, testListenURL, got["listen_url"])
		sp, _ := got["subprotocol"].([]any)
		require.Len(t, sp, 2, "subprotocol")
		assert.Equal(t, "token", sp[0])
		secret, _ := sp[1].(string)
		h.sawSecret(secret)
		assert.Regexp(t, "^[0-9a-f]{40}$", secret)
		expires, err := time.Parse(time.RFC3339Nano, got["expires"].(string))
		require.NoError(t, err)
		assert.True(t, time.Now().Add(10*time.Second).Equal(expires), "expires = now + TTL, got %v", expires)

		keyID, _ := got["key_id"].(string)
		assert.Equal(t, keystest.StatusActive, h.keyStatus(keyID))
		leaseID, _ := got["lease_id"].(string)
		assert.Regexp(t, "^[0-9a-f]{16}$", leaseID)
		st := b.status(leaseID)
		want := status{LeaseID: leaseID, Lease: "live", Credential: "active", Source: "deepgram", Expires: expires.Add(lease.DefaultExpiryMargin)}
		assert.Equal(t, want, st, "the key works until the lease's TTL plus the expiry margin")
	})
}

func TestReleaseDeletesKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		b := h.visitor()
		c := b.credential()
		start := time.Now()

		res := b.do("POST", "/api/release", releaseRequest{LeaseID: c.LeaseID}, nil)
		require.Equal(t, http.StatusOK, res.StatusCode)
		var rel released
		decode(t, res, &rel)
		assert.Equal(t, c.LeaseID, rel.LeaseID)
		assert.True(t, rel.Revocable)

		synctest.Wait() // the deleter and the hooks have done their work
		assert.Equal(t, time.Duration(0), time.Since(start), "no time passed: the TTL did not do it")
		assert.Equal(t, keystest.StatusDeleted, h.keyStatus(c.KeyID))
		fk, _ := h.fake.Key(c.KeyID)
		assert.Equal(t, 1, fk.Deletes, "API deletes")
		assert.Zero(t, h.s.leases.Stats().Live, "the lease has ended")

		st := b.status(c.LeaseID)
		assert.Equal(t, "released", st.Lease)
		assert.Equal(t, "deleted", st.Credential)
		assert.Equal(t, "deepgram", st.Source)

		// Releasing again is harmless.
		assert.Equal(t, http.StatusOK, b.release(c.LeaseID))
		synctest.Wait()
		fk, _ = h.fake.Key(c.KeyID)
		assert.Equal(t, 1, fk.Deletes, "API deletes")
	})
}

func TestTTLDeletesUnreleasedKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		b := h.visitor()
		c := b.credential()

		time.Sleep(10*time.Second - time.Nanosecond)
		synctest.Wait()
		assert.Equal(t, keystest.StatusActive, h.keyStatus(c.KeyID), "before the TTL")

		time.Sleep(time.Nanosecond)
		synctest.Wait()
		assert.Equal(t, keystest.StatusDeleted, h.keyStatus(c.KeyID), "at the TTL")
		st := b.status(c.LeaseID)
		assert.Equal(t, "expired", st.Lease)
		assert.Equal(t, "deleted", st.Credential)
		assert.Zero(t, h.s.leases.Stats().Live)
	})
}

func TestRateLimitAnswers429(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(c *config) { c.RateEvery, c.Burst = 90*time.Second, 1 })
		b := h.visitor()
		b.credential()

		time.Sleep(500 * time.Millisecond) // 89.5s to wait: rounded up to 90
		res := b.do("POST", "/api/credential", nil, nil)
		require.Equal(t, http.StatusTooManyRequests, res.StatusCode)
		assert.Equal(t, "90", res.Header.Get("Retry-After"))
		assert.Equal(t, "no-store", res.Header.Get("Cache-Control"))
		var got apiError
		decode(t, res, &got)
		assert.Equal(t, 90, got.RetryAfter)
		assert.Contains(t, got.Error, "try again in 90 s")

		// The limit is per visitor.
		h.visitor().credential()
	})
}

func TestVisitorCannotTouchAnotherVisitorsLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		alice, mallory := h.visitor(), h.visitor()
		c := alice.credential()
		anonymous := &browser{h: h}

		for _, b := range []*browser{mallory, anonymous} {
			assert.Equal(t, http.StatusNotFound, b.release(c.LeaseID), "release")
			res := b.do("GET", "/api/credential/"+c.LeaseID+"/status", nil, nil)
			assert.Equal(t, http.StatusNotFound, res.StatusCode, "status")
		}
		synctest.Wait()
		assert.Equal(t, keystest.StatusActive, h.keyStatus(c.KeyID))
		assert.Equal(t, "live", alice.status(c.LeaseID).Lease)
	})
}

func TestRequestsRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		b := h.visitor()
		noHeader := http.Header{apiHeader: nil}
		crossSite := http.Header{"Sec-Fetch-Site": {"cross-site"}, "Origin": {"https://evil.example"}}
		tests := []struct {
			name         string
			method, path string
			body         any
			hdr          http.Header
			want         int
		}{
			{"GET credential", "GET", "/api/credential", nil, nil, http.StatusMethodNotAllowed},
			{"GET release", "GET", "/api/release", nil, nil, http.StatusMethodNotAllowed},
			{"POST status", "POST", "/api/credential/x/status", nil, nil, http.StatusMethodNotAllowed},
			{"credential without API header", "POST", "/api/credential", nil, noHeader, http.StatusForbidden},
			{"release without API header", "POST", "/api/release", releaseRequest{LeaseID: "x"}, noHeader, http.StatusForbidden},
			{"cross-site credential", "POST", "/api/credential", nil, crossSite, http.StatusForbidden},
			{"release without body", "POST", "/api/release", nil, nil, http.StatusBadRequest},
			{"release of unknown lease", "POST", "/api/release", releaseRequest{LeaseID: "nope"}, nil, http.StatusNotFound},
			{"status of unknown lease", "GET", "/api/credential/nope/status", nil, nil, http.StatusNotFound},
			{"unknown page", "GET", "/nope", nil, nil, http.StatusNotFound},
		}
		for _, tt := range tests {
			res := b.do(tt.method, tt.path, tt.body, tt.hdr)
			assert.Equal(t, tt.want, res.StatusCode, tt.name)
		}
		synctest.Wait()
		assert.Len(t, h.fake.LiveKeys(), 1, "only the admin key: nothing was issued")
	})
}

func TestPageAndAssets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		b := h.visitor()
		tests := []struct{ path, contentType, contains string }{
			{"/", "text/html", `<button id="start"`},
			{"/static/app.js", "text/javascript", "new WebSocket("},
			{"/static/style.css", "text/css", ".timeline"},
		}
		for _, tt := range tests {
			res := b.do("GET", tt.path, nil, nil)
			require.Equal(t, http.StatusOK, res.StatusCode, tt.path)
			assert.Contains(t, res.Header.Get("Content-Type"), tt.contentType, tt.path)
			assert.Contains(t, readAll(res), tt.contains, tt.path)
			csp := res.Header.Get("Content-Security-Policy")
			assert.Contains(t, csp, "connect-src 'self' ws://listen.invalid;", tt.path)
		}

		res := b.do("GET", "/api/about", nil, nil)
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

		res := b.do("POST", "/api/credential", nil, nil)
		require.Equal(t, http.StatusTooManyRequests, res.StatusCode)
		assert.Equal(t, "7", res.Header.Get("Retry-After"))
		var got apiError
		decode(t, res, &got)
		assert.Equal(t, 7, got.RetryAfter)
		assert.Equal(t, "Too many credentials requested (Deepgram's rate limit): try again in 7 s.", got.Error)
		assert.Len(t, h.fake.LiveKeys(), 1, "only the admin key: nothing was issued")

		b.credential() // the fault answered one call
	})
}

func TestCreateFailureAnswers502(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		b := h.visitor()
		h.fake.Fail(keystest.OpCreate, keystest.Fault{Status: http.StatusServiceUnavailable})

		res := b.do("POST", "/api/credential", nil, nil)
		require.Equal(t, http.StatusBadGateway, res.StatusCode)
		assert.Equal(t, "no-store", res.Header.Get("Cache-Control"))
		body := readAll(res)
		var got apiError
		require.NoError(t, json.Unmarshal([]byte(body), &got))
		assert.Equal(t, "Could not get a credential from the fake; try again later.", got.Error)
		testenv.NoSecret(t, "the 502 answer", body, h.fake.AdminKey())

		synctest.Wait()
		// The Manager's LogHooks log the failure, once. (Counts only: a
		// failure message must not show a log that may hold a secret.)
		logs := h.logs.String()
		assert.Equal(t, 1, strings.Count(logs, "level=ERROR"), "error lines in the log")
		assert.Equal(t, 1, strings.Count(logs, `level=ERROR msg="lease error" lease.event=error lease.user=`+visitorID(b.cookie.Value)+" "), "lease errors for the visitor")
		assert.Equal(t, 1, strings.Count(logs, " lease.op=create "), "create failures in the log")
	})
}

func TestGrantTokens(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(c *config) { c.Grant = true })
		b := h.visitor()
		c := b.credential()
		require.Len(t, c.Subprotocol, 2)
		assert.Equal(t, "bearer", c.Subprotocol[0])
		assert.Equal(t, 3, strings.Count(c.secret(), ".")+1, "a JWT")
		assert.Empty(t, c.KeyID, "a grant token has no key ID")

		res := b.do("POST", "/api/release", releaseRequest{LeaseID: c.LeaseID}, nil)
		require.Equal(t, http.StatusOK, res.StatusCode)
		var rel released
		decode(t, res, &rel)
		assert.False(t, rel.Revocable, "grant tokens cannot be deleted")

		synctest.Wait()
		st := b.status(c.LeaseID)
		assert.Equal(t, "released", st.Lease)
		assert.Equal(t, "active", st.Credential, "a released grant token works until it expires")
		assert.Equal(t, "token expiry", st.Source)

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
		serverExpires := deleted.Expires.Add(lease.DefaultExpiryMargin)
		want := status{LeaseID: deleted.LeaseID, Lease: "live", Credential: "active", Source: "lease", Expires: serverExpires}
		assert.Equal(t, want, b.status(deleted.LeaseID))

		require.Equal(t, http.StatusOK, b.release(deleted.LeaseID))
		synctest.Wait()
		require.Equal(t, keystest.StatusDeleted, h.keyStatus(deleted.KeyID))
		want.Lease, want.Credential = "released", "deletion requested"
		assert.Equal(t, want, b.status(deleted.LeaseID), "the backend does not know the deletion worked")

		h.fake.Fail(keystest.OpDelete, keystest.Fault{Status: http.StatusForbidden}) // not retried
		require.Equal(t, http.StatusOK, b.release(failed.LeaseID))
		synctest.Wait()
		require.Equal(t, keystest.StatusActive, h.keyStatus(failed.KeyID))
		assert.Equal(t, status{LeaseID: failed.LeaseID, Lease: "released", Credential: "deletion failed", Source: "lease", Expires: serverExpires},
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

func TestRetryAfterRoundsUp(t *testing.T) {
	tests := []struct {
		wait time.Duration
		want int
	}{
		{1500 * time.Millisecond, 2},
		{2 * time.Second, 2},
		{time.Millisecond, 1},
	}
	for _, tt := range tests {
		synctest.Test(t, func(t *testing.T) {
			h := newHarness(t, func(c *config) { c.RateEvery, c.Burst = 2*time.Second, 1 })
			b := h.visitor()
			b.credential()
			time.Sleep(2*time.Second - tt.wait)
			res := b.do("POST", "/api/credential", nil, nil)
			require.Equal(t, http.StatusTooManyRequests, res.StatusCode)
			assert.Equal(t, strconv.Itoa(tt.want), res.Header.Get("Retry-After"), "wait %v", tt.wait)
		})
	}
}

func TestEndedLeaseForgotten(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		b := h.visitor()
		c := b.credential()
		require.Equal(t, http.StatusOK, b.release(c.LeaseID))
		synctest.Wait()
		assert.Equal(t, "released", b.status(c.LeaseID).Lease, "still known after it ended")

		time.Sleep(endedRetention + time.Second)
		b.credential() // issuing prunes the ledger
		synctest.Wait()
		res := b.do("GET", "/api/credential/"+c.LeaseID+"/status", nil, nil)
		assert.Equal(t, http.StatusNotFound, res.StatusCode, "forgotten after endedRetention")
	})
}
