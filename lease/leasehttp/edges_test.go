package leasehttp_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/keys"
	"github.com/dglease/dglease/keys/keystest"
	"github.com/dglease/dglease/lease"
	"github.com/dglease/dglease/lease/leasehttp"
)

// A client that leaves while its key is made gets nothing, and the lease
// ends at once rather than holding the user's caps until its TTL.
func TestAbandonedCredentialIsReleased(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		srv.SetLatency(keystest.OpCreate, time.Second)
		r := newReplica(t, srv, nil)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(500*time.Millisecond, cancel) // the page navigates away
		req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/credential", nil)
		req.Header.Set(userHeader, "alice")
		r.h.ServeHTTP(httptest.NewRecorder(), req)
		require.NoError(t, r.m.Flush(context.Background()))
		s := r.m.Stats()
		assert.Equal(t, uint64(1), s.Acquired)
		assert.Zero(t, s.Live)
		assert.Equal(t, uint64(1), s.Deleted)
	})
}

// wrapped is an internal error wrapping one meant for the client.
type sessionExpired struct{}

func (sessionExpired) Error() string   { return "session expired: sign in again" }
func (sessionExpired) StatusCode() int { return http.StatusUnauthorized }

func TestIdentifyStatusErrorSpeaksForItselfOnly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, err := lease.New(fake(t).Client())
		require.NoError(t, err)
		defer m.Close(context.Background())
		h, err := leasehttp.New(m, func(*http.Request) (string, error) {
			return "", fmt.Errorf("session store row 42 at 10.0.0.7: %w", sessionExpired{})
		})
		require.NoError(t, err)
		w := serve(h, http.MethodPost, "/credential", "", "")
		assert.Equal(t, http.StatusUnauthorized, w.Code)
		assert.Equal(t, "session expired: sign in again", errorBody(t, w)["error"])
	})
}

// downLimiter cannot decide, as a fail-closed leaseredis with Redis down.
type downLimiter struct{}

func (downLimiter) Admit(context.Context, lease.Admission) (func(bool), error) {
	return nil, errors.New("dial tcp 10.0.0.9:6379: connection refused")
}

func TestLimiterDownAnswers503(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		r := newReplica(t, srv, []lease.Option{lease.WithLimiter(downLimiter{})})
		w := serve(r.h, http.MethodPost, "/credential", "alice", "")
		assert.Equal(t, http.StatusServiceUnavailable, w.Code)
		body := errorBody(t, w)
		assert.Contains(t, body["error"], "cannot check its limits")
		assert.NotContains(t, w.Body.String(), "10.0.0.9")
		assert.Contains(t, r.logs.String(), "10.0.0.9")
		assert.Len(t, srv.Keys(), 1, "nothing minted")
	})
}

// longIDs answers key IDs longer than a release handle carries.
type longIDs struct{ lease.KeyService }

func (l longIDs) Create(ctx context.Context, s keys.Spec) (*keys.Key, error) {
	k, err := l.KeyService.Create(ctx, s)
	if k != nil {
		k.ID += strings.Repeat("x", 40)
	}
	return k, err
}

func TestKeyIDTooLongForAHandleIsNotHandedOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		m, err := lease.New(longIDs{srv.Client()}, lease.WithRateLimit(0, 1))
		require.NoError(t, err)
		defer m.Close(context.Background())
		h, err := leasehttp.New(m, identify)
		require.NoError(t, err)
		w := serve(h, http.MethodPost, "/credential", "alice", "")
		assert.Equal(t, http.StatusBadGateway, w.Code)
		assert.Contains(t, errorBody(t, w)["error"], "cannot hand over")
		assert.Zero(t, m.Stats().Live, "the lease ended at once")
	})
}

func TestForeignReleaseEdges(t *testing.T) {
	t.Run("grant token held elsewhere", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			_, r1, r2 := sharedKeyPair(t, []lease.Option{lease.WithGrantTokens()})
			c := getCredential(t, r1.h, "alice")
			w := serve(r2.h, http.MethodPost, "/release", "alice", releaseBody(c.Release))
			assert.Equal(t, http.StatusNoContent, w.Code, w.Body.String())
			require.NoError(t, r2.m.Flush(context.Background()))
			assert.Zero(t, r2.m.Stats().DeleteAttempts, "a grant token has nothing to delete")
		})
	})
	t.Run("expired handle", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			_, r1, r2 := sharedKeyPair(t, nil)
			c := getCredential(t, r1.h, "alice")
			time.Sleep(lease.DefaultTTL)
			w := serve(r2.h, http.MethodPost, "/release", "alice", releaseBody(c.Release))
			assert.Equal(t, http.StatusForbidden, w.Code)
			assert.Contains(t, errorBody(t, w)["error"], "expired")
			assert.Zero(t, r2.m.Stats().ForeignReleases)
		})
	})
	t.Run("replayed", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			_, r1, r2 := sharedKeyPair(t, nil)
			c := getCredential(t, r1.h, "alice")
			for range 5 {
				w := serve(r2.h, http.MethodPost, "/release", "alice", releaseBody(c.Release))
				require.Equal(t, http.StatusNoContent, w.Code, w.Body.String())
			}
			require.NoError(t, r2.m.Flush(context.Background()))
			assert.Equal(t, uint64(1), r2.m.Stats().DeleteAttempts, "one delete however often it is replayed")
		})
	})
	t.Run("after Close", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			_, r1, r2 := sharedKeyPair(t, nil)
			c := getCredential(t, r1.h, "alice")
			require.NoError(t, r2.m.Close(context.Background()))
			w := serve(r2.h, http.MethodPost, "/release", "alice", releaseBody(c.Release))
			assert.Equal(t, http.StatusServiceUnavailable, w.Code)
			assert.Contains(t, errorBody(t, w)["error"], "shutting down")
		})
	})
	t.Run("replicas with different keys", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			srv := fake(t)
			r1 := newReplica(t, srv, nil, leasehttp.WithReleaseKey(releaseKey()))
			r2 := newReplica(t, srv, nil, leasehttp.WithReleaseKey(releaseKey()))
			c := getCredential(t, r1.h, "alice")
			w := serve(r2.h, http.MethodPost, "/release", "alice", releaseBody(c.Release))
			assert.Equal(t, http.StatusForbidden, w.Code)
			assert.Contains(t, errorBody(t, w)["error"], "do not all share the same leasehttp.WithReleaseKey")
		})
	})
}

// Without WithReleaseKey, Handlers on one Manager share its key: a second
// mount, or a Handler rebuilt on reload, accepts the first one's handles.
func TestHandlersOnOneManagerShareTheDefaultKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		r := newReplica(t, srv, nil)
		again, err := leasehttp.New(r.m, identify)
		require.NoError(t, err)
		c := getCredential(t, r.h, "alice")
		w := serve(again, http.MethodPost, "/release", "alice", releaseBody(c.Release))
		assert.Equal(t, http.StatusNoContent, w.Code, w.Body.String())
		_, live := r.m.Owner(c.LeaseID)
		assert.False(t, live)
	})
}

func TestAllowedOriginsMustBeWhatBrowsersSend(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, err := lease.New(fake(t).Client())
		require.NoError(t, err)
		defer m.Close(context.Background())
		for o, want := range map[string]string{
			"https://app.example:443": "https://app.example",
			"http://app.example:80":   "http://app.example",
			"https://App.Example":     "https://app.example",
		} {
			_, err := leasehttp.New(m, identify, leasehttp.WithAllowedOrigins(o))
			assert.ErrorContains(t, err, fmt.Sprintf("browsers send it as %q", want), o)
		}
		_, err = leasehttp.New(m, identify, leasehttp.WithAllowedOrigins("https://app.example:8443", "http://localhost:3000"))
		assert.NoError(t, err)
	})
}
