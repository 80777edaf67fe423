package lease_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/lease"
)

// TestLocalLimiterReleaseIsIdempotent: a slot's release called twice
// frees the slot once, so that a caller's double call cannot lift a cap.
func TestLocalLimiterReleaseIsIdempotent(t *testing.T) {
	l := lease.NewLocalLimiter()
	a := lease.Admission{User: "alice", LeaseID: "0123456789abcdef",
		Limits: lease.Limits{MaxLeases: 10, MaxPerUser: 2, TTL: time.Minute}, Hold: time.Minute}
	r1, err := l.Admit(context.Background(), a)
	require.NoError(t, err)
	r2, err := l.Admit(context.Background(), a)
	require.NoError(t, err)
	_, err = l.Admit(context.Background(), a)
	var denied *lease.DeniedError
	require.True(t, errors.As(err, &denied), "the third is over the per-user cap of 2: %v", err)
	assert.Equal(t, lease.LimitUserCap, denied.Limit)

	r1(true)
	r1(true) // ignored: frees nothing more
	r3, err := l.Admit(context.Background(), a)
	require.NoError(t, err, "the slot r1 freed")
	_, err = l.Admit(context.Background(), a)
	require.ErrorAs(t, err, &denied, "r1's second call must not have freed r2's or r3's slot")
	r2(false)
	r3(true)
}

// Managers sharing the local limiter may set different rates: each
// Admission's limits are applied to the user's bucket.
func TestLocalLimiterTakesEachAdmissionsRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := lease.NewLocalLimiter()
		slow := lease.Admission{User: "alice", LeaseID: "0123456789abcdef",
			Limits: lease.Limits{Every: time.Hour, Burst: 1, MaxLeases: 10, MaxPerUser: 10, TTL: time.Minute}, Hold: time.Minute}
		r, err := l.Admit(context.Background(), slow)
		require.NoError(t, err)
		r(true)
		_, err = l.Admit(context.Background(), slow)
		require.ErrorIs(t, err, lease.ErrDenied, "one an hour")

		fast := slow
		fast.Limits.Every = time.Millisecond
		_, err = l.Admit(context.Background(), fast) // sets the faster rate; its bucket is still empty
		require.ErrorIs(t, err, lease.ErrDenied)
		time.Sleep(time.Millisecond)
		r, err = l.Admit(context.Background(), fast)
		require.NoError(t, err, "a millisecond later at one a millisecond")
		r(true)
	})
}

// refusingLimiter refuses every Acquire with a DeniedError that names no
// user: the Limiter interface does not require one.
type refusingLimiter struct{}

func (refusingLimiter) Admit(context.Context, lease.Admission) (func(bool), error) {
	return nil, &lease.DeniedError{Limit: lease.LimitRate, RetryAfter: time.Second}
}

// OnDenied names the user Acquire was called for, whatever the limiter's
// error says.
func TestDeniedEventNamesAcquiresUser(t *testing.T) {
	var got []string
	m := newManager(t, &stub{}, lease.WithLimiter(refusingLimiter{}), lease.WithHooks(lease.Hooks{OnDenied: func(e lease.Event) { got = append(got, e.User) }}))
	_, err := m.Acquire(context.Background(), "alice")
	var denied *lease.DeniedError
	require.ErrorAs(t, err, &denied)
	assert.Equal(t, []string{"alice"}, got)
	assert.Equal(t, uint64(1), m.Usage("alice").Denied)
}
