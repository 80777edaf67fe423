package lease_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/keys"
	"github.com/dglease/dglease/keys/keystest"
	"github.com/dglease/dglease/lease"
)

// A create slower than the TTL still gives a live lease with its whole
// TTL, counted from when the key arrived.
func TestLeaseLifeCountsFromArrival(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		m := newManager(t, srv.Client(), lease.WithTTL(2*time.Second))
		srv.SetLatency(keystest.OpCreate, 3*time.Second)
		l, err := m.Acquire(context.Background(), "alice")
		require.NoError(t, err)
		arrived := time.Now()
		assert.Equal(t, lease.Reason(0), l.Reason(), "live when Acquire returns")
		assert.Equal(t, arrived.Add(2*time.Second), l.Expires())
		assert.True(t, l.Expires().Before(l.ServerExpires()))
		synctest.Wait()
		assert.Equal(t, keystest.StatusActive, state(t, srv, l.KeyID()).Status)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		assert.Equal(t, lease.ReasonExpired, l.Reason())
		assert.Equal(t, keystest.StatusDeleted, state(t, srv, l.KeyID()).Status)
	})
}

// A credential that arrives after its own expiry on Deepgram's side is
// refused with an error that says what to change, and a key is deleted.
func TestCredentialArrivingExpiredIsRefused(t *testing.T) {
	t.Run("key", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			srv := fake(t)
			// The key lives 2 s + 5 s on Deepgram's side; the create takes 8 s.
			m := newManager(t, srv.Client(), lease.WithTTL(2*time.Second), lease.WithExpiryMargin(5*time.Second))
			srv.SetLatency(keystest.OpCreate, 8*time.Second)
			l, err := m.Acquire(context.Background(), "alice")
			require.Error(t, err)
			assert.Nil(t, l)
			assert.ErrorContains(t, err, "arrived too late")
			assert.ErrorContains(t, err, "WithExpiryMargin")
			require.NoError(t, m.Flush(context.Background()))
			assert.Equal(t, 1, countOps(srv, keystest.OpDelete), "the key was deleted at once")
			assert.Empty(t, liveIDs(srv))
			assert.Equal(t, uint64(1), m.Stats().Errors)
			assert.Zero(t, m.Usage("alice").Live)
		})
	})
	t.Run("grant token", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			srv := fake(t)
			m := newManager(t, srv.Client(), lease.WithGrantTokens(), lease.WithTTL(2*time.Second))
			srv.SetLatency(keystest.OpGrant, 3*time.Second)
			l, err := m.Acquire(context.Background(), "alice")
			assert.Nil(t, l)
			assert.ErrorContains(t, err, "arrived too late")
		})
	})
	t.Run("key with less than a second left", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			srv := fake(t)
			m := newManager(t, srv.Client(), lease.WithTTL(2*time.Second), lease.WithExpiryMargin(5*time.Second))
			srv.SetLatency(keystest.OpCreate, 6500*time.Millisecond)
			_, err := m.Acquire(context.Background(), "alice")
			assert.ErrorContains(t, err, "500ms of its life left, less than 1s")
			require.NoError(t, m.Flush(context.Background()))
			assert.Empty(t, liveIDs(srv))
		})
	})
	t.Run("key with a second and a half left is cut to it", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			srv := fake(t)
			m := newManager(t, srv.Client(), lease.WithTTL(2*time.Second), lease.WithExpiryMargin(5*time.Second))
			srv.SetLatency(keystest.OpCreate, 5500*time.Millisecond)
			start := time.Now()
			l, err := m.Acquire(context.Background(), "alice")
			require.NoError(t, err)
			assert.Equal(t, start.Add(7*time.Second), l.Expires(), "never past the key's own expiry")
			assert.Equal(t, 1500*time.Millisecond, time.Until(l.Expires()))
		})
	})
}

// Deepgram answering a create (or grant) with 429 is a refusal like the
// Manager's own: a *DeniedError matching ErrDenied, LimitDeepgram, with
// RetryAfter from Deepgram's header (or 1 s without one), OnDenied rather
// than OnError, and Deepgram's answer reachable with errors.As.
func TestDeepgramRefusalIsDenied(t *testing.T) {
	tests := []struct {
		name      string
		grant     bool
		fault     keystest.Fault
		wantRetry time.Duration
	}{
		{"key, Retry-After", false, keystest.Fault{Status: 429, RetryAfter: 3 * time.Second}, 3 * time.Second},
		{"key, no Retry-After", false, keystest.Fault{Status: 429}, time.Second},
		{"grant, Retry-After", true, keystest.Fault{Status: 429, RetryAfter: 7 * time.Second}, 7 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := fake(t)
				var log hookLog
				opts := []lease.Option{lease.WithMaxLeases(1, 1), lease.WithHooks(log.recording("h"))}
				op := keystest.OpCreate
				if tt.grant {
					opts, op = append(opts, lease.WithGrantTokens()), keystest.OpGrant
				}
				m := newManager(t, srv.Client(), opts...)
				srv.Fail(op, tt.fault)
				_, err := m.Acquire(context.Background(), "alice")
				require.ErrorIs(t, err, lease.ErrDenied)
				var denied *lease.DeniedError
				require.ErrorAs(t, err, &denied)
				assert.Equal(t, lease.LimitDeepgram, denied.Limit)
				assert.Equal(t, "alice", denied.User)
				assert.Equal(t, tt.wantRetry, denied.RetryAfter)
				var apiErr *keys.APIError
				require.ErrorAs(t, err, &apiErr, "Deepgram's answer stays reachable")
				assert.Equal(t, 429, apiErr.StatusCode)
				assert.ErrorIs(t, err, keys.ErrRateLimited)
				assert.Contains(t, err.Error(), "Deepgram's rate limit")
				assert.Equal(t, []string{"h:denied"}, log.list())
				st := m.Stats()
				assert.Equal(t, uint64(1), st.Denied)
				assert.Zero(t, st.Errors)
				assert.Equal(t, uint64(1), m.Usage("alice").Denied)
				_, err = m.Acquire(context.Background(), "alice")
				require.NoError(t, err, "the refusal held no slot")
			})
		})
	}
}

// The Manager's own refusals carry their typed Limit and a RetryAfter.
func TestManagerRefusalsAreTyped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		m := newManager(t, srv.Client(), lease.WithRateLimit(time.Second, 1), lease.WithMaxLeases(2, 1), lease.WithTTL(10*time.Second))
		_, err := m.Acquire(context.Background(), "alice")
		require.NoError(t, err)
		check := func(user string, want lease.Limit, retry time.Duration) {
			t.Helper()
			_, err := m.Acquire(context.Background(), user)
			var denied *lease.DeniedError
			require.ErrorAs(t, err, &denied)
			require.ErrorIs(t, err, lease.ErrDenied)
			assert.Equal(t, want, denied.Limit)
			assert.Equal(t, retry, denied.RetryAfter)
			assert.Nil(t, denied.Err)
			assert.Contains(t, err.Error(), want.String())
		}
		check("alice", lease.LimitUserCap, 10*time.Second)
		_, err = m.Acquire(context.Background(), "bob")
		require.NoError(t, err)
		check("carol", lease.LimitTotalCap, 10*time.Second)
	})
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		m := newManager(t, srv.Client(), lease.WithRateLimit(2*time.Second, 1))
		_, err := m.Acquire(context.Background(), "alice")
		require.NoError(t, err)
		_, err = m.Acquire(context.Background(), "alice")
		var denied *lease.DeniedError
		require.ErrorAs(t, err, &denied)
		assert.Equal(t, lease.LimitRate, denied.Limit)
		assert.Equal(t, 2*time.Second, denied.RetryAfter)
	})
}

// unusableAnswer creates the key, then reports the answer unusable as
// keys.Client does when Deepgram's answer names a key but lacks its secret.
type unusableAnswer struct{ lease.KeyService }

func (u unusableAnswer) Create(ctx context.Context, s keys.Spec) (*keys.Key, error) {
	k, err := u.KeyService.Create(ctx, s)
	if err != nil {
		return nil, err
	}
	return nil, &keys.UnusableKeyError{KeyID: k.ID, Err: errors.New("no secret in the answer")}
}

// A key named by a create answer that cannot be used is deleted at once,
// not left to its expiry.
func TestUnusableCreateAnswerKeyIsDeleted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		var errEvents []lease.Event
		m := newManager(t, unusableAnswer{srv.Client()}, lease.WithHooks(lease.Hooks{OnError: func(e lease.Event) { errEvents = append(errEvents, e) }}))
		l, err := m.Acquire(context.Background(), "alice")
		assert.Nil(t, l)
		var unusable *keys.UnusableKeyError
		require.ErrorAs(t, err, &unusable)
		require.NoError(t, m.Flush(context.Background()))
		assert.Equal(t, keystest.StatusDeleted, state(t, srv, unusable.KeyID).Status, "deleted at once")
		require.Len(t, errEvents, 1)
		assert.Equal(t, "create", errEvents[0].Op)
		assert.Equal(t, unusable.KeyID, errEvents[0].KeyID)
		assert.Zero(t, m.Usage("alice").Live)
	})
}
