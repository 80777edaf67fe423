package lease_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/keys"
	"github.com/dglease/dglease/keys/keystest"
	"github.com/dglease/dglease/lease"
)

// A storm of Releases: the deleter's concurrency grows from 8 to its bound
// while deletes succeed, so 2,048 keys whose deletes take 50 ms are all
// deleted in well under a second of fake time (8 at a time, the old fixed
// concurrency, would take 12.8 s).
func TestDeleteConcurrencyGrowsToKeepPace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &stub{deleteWait: 50 * time.Millisecond}
		m := newManager(t, s, lease.WithMaxLeases(4096, 4096), lease.WithDeleteConcurrency(256))
		assert.Equal(t, 16, lease.DeleteLimit(m), "starts at 16")
		ls := make([]*lease.Lease, 2048)
		for i := range ls {
			var err error
			ls[i], err = m.Acquire(context.Background(), "storm")
			require.NoError(t, err)
		}
		start := time.Now()
		for _, l := range ls {
			l.Release()
		}
		require.NoError(t, m.Flush(context.Background()))
		elapsed := time.Since(start)
		assert.Equal(t, int64(2048), s.deleted.Load())
		assert.Equal(t, int64(256), s.maxDelete.Load(), "reached its bound")
		assert.LessOrEqual(t, elapsed, time.Second, "all deleted in %s", elapsed)
		t.Logf("2,048 deletes of 50 ms: %s of fake time", elapsed)
	})
}

// With the default bound, deletion outpaces 256 callers creating keys at
// once (each: Acquire, Release, again), so the backlog left by its ramp-up
// is worked off while the storm goes on. With a bound equal to the number
// of creators (256, the old default) deletion only ties creation, and the
// backlog (about 1,000 keys here) stays until the storm ends.
func TestDeletionOutpacesAStormOfCreators(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const callers, each = 256, 32
		s := &stub{createWait: 50 * time.Millisecond, deleteWait: 50 * time.Millisecond}
		m := newManager(t, s, lease.WithRateLimit(0, 1), lease.WithMaxLeases(callers*each, callers*each))
		var wg sync.WaitGroup
		for c := range callers {
			wg.Go(func() {
				for range each {
					l, err := m.Acquire(context.Background(), fmt.Sprint("user-", c))
					if !assert.NoError(t, err) {
						return
					}
					l.Release()
				}
			})
		}
		wg.Wait()
		synctest.Wait() // the deletes due at the last Release's instant have run
		st := m.Stats()
		t.Logf("at the storm's end: %d keys pending deletion (peak %d), %d deleted; at most %d deletes at once",
			st.DeletePending, st.DeletePeak, st.Deleted, s.maxDelete.Load())
		assert.Greater(t, s.maxDelete.Load(), int64(callers), "deletes outnumbered the creators at some point")
		// In fake time the callers move in step: a round's releases and the
		// round before's deletes, still running, are pending at the end
		// (up to 2*callers; how fast the window grew depends on the order
		// goroutines run in within an instant, hence the margin). A backlog
		// never worked off is about 4*callers.
		assert.LessOrEqual(t, st.DeletePending, 3*callers, "the ramp-up's backlog was worked off during the storm")
		require.NoError(t, m.Flush(context.Background()))
		assert.Equal(t, int64(callers*each), s.deleted.Load())
	})
}

// failingDeletes answers every delete with status, after wait, until ok is
// set.
type failingDeletes struct {
	lease.KeyService
	status int
	wait   time.Duration
	ok     atomic.Bool
}

func (f *failingDeletes) Delete(ctx context.Context, id string) error {
	time.Sleep(f.wait)
	if !f.ok.Load() {
		return &keys.APIError{StatusCode: f.status}
	}
	return f.KeyService.Delete(ctx, id)
}

// On 503 (or 429) the concurrency halves, at most once per 250 ms, and
// grows back once deletes succeed.
func TestDeleteConcurrencyBacksOffOnOverload(t *testing.T) {
	for _, status := range []int{429, 503} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := fake(t)
				api := &failingDeletes{KeyService: srv.Client(), status: status, wait: 10 * time.Millisecond}
				m := newManager(t, api, lease.WithMaxLeases(1000, 1000), lease.WithDeleteConcurrency(64), lease.WithTTL(time.Hour))
				var ls []*lease.Lease
				for range 200 {
					l, err := m.Acquire(context.Background(), "u")
					require.NoError(t, err)
					ls = append(ls, l)
				}
				for _, l := range ls {
					l.Release()
				}
				synctest.Wait()
				assert.Equal(t, 16, lease.DeleteLimit(m))
				time.Sleep(15 * time.Millisecond) // the first 16 attempts fail
				synctest.Wait()
				assert.Equal(t, 8, lease.DeleteLimit(m), "halved once")
				time.Sleep(time.Second)
				synctest.Wait()
				assert.Equal(t, 1, lease.DeleteLimit(m), "halved every 250 ms while failures go on")
				api.ok.Store(true)
				require.NoError(t, m.Flush(context.Background()))
				assert.Greater(t, lease.DeleteLimit(m), 16, "grew again once deletes succeed")
				assert.Empty(t, liveIDs(srv))
			})
		})
	}
}

// Keys in existence are bounded: with released keys not deleted yet, an
// Acquire past WithMaxKeys is refused (LimitKeys), and admitted again once
// the deleter has caught up.
func TestMaxKeysPushesBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		m := newManager(t, srv.Client(), lease.WithMaxLeases(10, 10), lease.WithMaxKeys(10))
		srv.SetLatency(keystest.OpDelete, 5*time.Second)
		for range 6 {
			l, err := m.Acquire(context.Background(), "alice")
			require.NoError(t, err)
			l.Release() // 6 keys waiting for deletion
		}
		for range 4 {
			l, err := m.Acquire(context.Background(), "alice") // 4 live
			require.NoError(t, err)
			defer l.Release() // kept: a dropped lease may end as leaked
		}
		_, err := m.Acquire(context.Background(), "alice")
		var denied *lease.DeniedError
		require.ErrorAs(t, err, &denied)
		assert.Equal(t, lease.LimitKeys, denied.Limit)
		assert.Equal(t, time.Second, denied.RetryAfter)
		assert.Contains(t, err.Error(), "cap on keys in existence")
		require.NoError(t, m.Flush(context.Background()))
		l, err := m.Acquire(context.Background(), "alice")
		require.NoError(t, err, "admitted once the deleter caught up")
		l.Release()
		_, err = lease.New(srv.Client(), lease.WithMaxLeases(100, 10), lease.WithMaxKeys(50))
		assert.ErrorContains(t, err, "key cap 50 is below the total lease cap 100")
	})
}

// Keys the deleter gave up on still work until their expiry: the cap on
// keys in existence counts them until then, so that a storm of refused
// deletes cannot let Acquire mint without bound.
func TestMaxKeysCountsKeysGivenUpOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		m := newManager(t, srv.Client(), lease.WithMaxLeases(2, 2), lease.WithMaxKeys(2), lease.WithTTL(10*time.Second))
		srv.Fail(keystest.OpDelete, keystest.Fault{Status: 429, RetryAfter: time.Hour, Times: -1})
		for range 2 {
			l, err := m.Acquire(context.Background(), "alice")
			require.NoError(t, err)
			l.Release()
		}
		require.NoError(t, m.Flush(context.Background()))
		require.Equal(t, 2, len(m.Undeleted()), "both given up at once: the retry would come after their expiry")
		_, err := m.Acquire(context.Background(), "alice")
		var denied *lease.DeniedError
		require.ErrorAs(t, err, &denied, "the two keys still work")
		assert.Equal(t, lease.LimitKeys, denied.Limit)
		time.Sleep(15 * time.Second) // past their expiry (TTL plus the margin)
		srv.ClearFaults(keystest.OpDelete)
		l, err := m.Acquire(context.Background(), "alice")
		require.NoError(t, err, "expired keys no longer count")
		l.Release()
	})
}
