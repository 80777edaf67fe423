package lease_test

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/keys/keystest"
	"github.com/dglease/dglease/lease"
)

// foreign describes l as another Manager would receive it.
func foreign(l *lease.Lease, user string) lease.ForeignLease {
	return lease.ForeignLease{LeaseID: l.ID(), KeyID: l.KeyID(), User: user, ServerExpires: l.ServerExpires()}
}

func TestReleaseForeignDeletesAtOnceAndTheHolderCountsItGone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		var mu sync.Mutex
		var errs, gone []lease.Event
		hooks := lease.Hooks{
			OnError: func(e lease.Event) { mu.Lock(); errs = append(errs, e); mu.Unlock() },
			OnDelete: func(e lease.Event) {
				if e.AlreadyDeleted {
					mu.Lock()
					gone = append(gone, e)
					mu.Unlock()
				}
			},
		}
		holder := newManager(t, srv.Client(), lease.WithHooks(hooks))
		other := newManager(t, srv.Client(), lease.WithHooks(hooks))
		require.NotEqual(t, holder.ID(), other.ID())
		assert.Len(t, holder.ID(), 16)

		l, err := holder.Acquire(context.Background(), "alice")
		require.NoError(t, err)
		l.Detach()
		require.NoError(t, other.ReleaseForeign(foreign(l, "alice")))
		require.NoError(t, other.Flush(context.Background()))
		assert.Equal(t, keystest.StatusDeleted, state(t, srv, l.KeyID()).Status, "deleted at once, not at the TTL")
		_, live := holder.Owner(l.ID())
		assert.True(t, live, "the holder is not told")

		time.Sleep(lease.DefaultTTL + time.Second)
		require.NoError(t, holder.Flush(context.Background()))
		assert.Equal(t, lease.ReasonExpired, l.Reason())
		assert.Equal(t, 1, state(t, srv, l.KeyID()).Deletes, "deleted exactly once")

		hs, os := holder.Stats(), other.Stats()
		assert.Equal(t, uint64(0), hs.Deleted)
		assert.Equal(t, uint64(1), hs.AlreadyDeleted)
		assert.Equal(t, uint64(1), os.Deleted)
		assert.Equal(t, uint64(1), os.ForeignReleases)
		assert.Equal(t, uint64(0), hs.DeleteFailed+os.DeleteFailed)
		mu.Lock()
		defer mu.Unlock()
		assert.Empty(t, errs, "no error reported")
		require.Len(t, gone, 1)
		assert.Equal(t, l.KeyID(), gone[0].KeyID)
	})
}

func TestReleaseForeignOfOwnLeaseReleasesIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		m := newManager(t, srv.Client())
		l, err := m.Acquire(context.Background(), "alice")
		require.NoError(t, err)
		require.NoError(t, m.ReleaseForeign(foreign(l, "alice")))
		assert.Equal(t, lease.ReasonReleased, l.Reason())
		require.NoError(t, m.Flush(context.Background()))
		s := m.Stats()
		assert.Equal(t, uint64(1), s.Deleted)
		assert.Equal(t, uint64(0), s.ForeignReleases)
	})
}

func TestReleaseForeignBadInput(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		holder := newManager(t, srv.Client())
		other := newManager(t, srv.Client())
		l, err := holder.Acquire(context.Background(), "alice")
		require.NoError(t, err)
		defer l.Release()
		f := foreign(l, "alice")

		noKey := f
		noKey.KeyID = ""
		assert.ErrorContains(t, other.ReleaseForeign(noKey), "KeyID")
		noExpiry := f
		noExpiry.ServerExpires = time.Time{}
		assert.ErrorContains(t, other.ReleaseForeign(noExpiry), "ServerExpires")
		expired := f
		expired.ServerExpires = time.Now().Add(-time.Second)
		assert.NoError(t, other.ReleaseForeign(expired), "an expired key needs nothing")
		require.NoError(t, other.Flush(context.Background()))
		assert.Equal(t, uint64(0), other.Stats().DeleteAttempts)
		assert.Equal(t, keystest.StatusActive, state(t, srv, l.KeyID()).Status)

		require.NoError(t, other.Close(context.Background()))
		assert.ErrorIs(t, other.ReleaseForeign(f), lease.ErrClosed)
		assert.Equal(t, keystest.StatusActive, state(t, srv, l.KeyID()).Status)
	})
}

func TestReleaseForeignTwiceDeletesOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		holder := newManager(t, srv.Client())
		other := newManager(t, srv.Client())
		l, err := holder.Acquire(context.Background(), "alice")
		require.NoError(t, err)
		l.Detach()
		for range 3 {
			require.NoError(t, other.ReleaseForeign(foreign(l, "alice")))
			require.NoError(t, other.Flush(context.Background()))
		}
		s := other.Stats()
		assert.Equal(t, uint64(1), s.ForeignReleases)
		assert.Equal(t, uint64(1), s.DeleteAttempts, "a repeated release costs no call")

	})
}
