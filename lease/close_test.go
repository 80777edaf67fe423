package lease_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/dglease/dglease/keys"
	"github.com/dglease/dglease/keys/keystest"
	"github.com/dglease/dglease/lease"
)

// Leases released at the very moment Close runs still have their keys
// deleted before Close returns. (A lease already ending when Close took its
// snapshot used to hand its key to a deleter Close had already stopped.)
func TestReleaseRacingCloseLosesNoKey(t *testing.T) {
	trials := 2000
	if testing.Short() {
		trials = 200
	}
	for trial := range trials {
		s := &stub{}
		m, err := lease.New(s, lease.WithRateLimit(rate.Inf, 1))
		require.NoError(t, err)
		var ls []*lease.Lease
		for i := range 4 {
			l, err := m.Acquire(context.Background(), fmt.Sprint("u", i))
			require.NoError(t, err)
			ls = append(ls, l)
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for _, l := range ls {
			wg.Add(1)
			go func() { defer wg.Done(); <-start; l.Release() }()
		}
		close(start)
		err = m.Close(context.Background())
		wg.Wait()
		require.NoError(t, err, "trial %d", trial)
		require.Equal(t, int64(4), s.deleted.Load(), "trial %d: every key deleted before Close returned", trial)
	}
}

// Close's context bounds a periodic sweep that is in flight.
func TestCloseDoesNotWaitForARunningSweep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		m, err := lease.New(srv.Client(), lease.WithSweepInterval(time.Hour))
		require.NoError(t, err)
		srv.Hang(keystest.OpList, 1)
		time.Sleep(time.Hour + time.Second) // the sweep runs; its list hangs
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		require.NoError(t, m.Close(ctx))
		assert.Less(t, time.Since(start), time.Second, "Close cancels the sweep instead of waiting for it")
	})
}

// A hook that never returns delays Close by at most the hook grace period.
func TestStuckHookDoesNotHangClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		block := make(chan struct{})
		m, err := lease.New(srv.Client(), lease.WithHooks(lease.Hooks{OnAcquire: func(lease.Event) { <-block }}))
		require.NoError(t, err)
		l, err := m.Acquire(context.Background(), "u")
		require.NoError(t, err)
		l.Release()
		start := time.Now()
		require.NoError(t, m.Close(context.Background()))
		assert.Equal(t, 5*time.Second, time.Since(start), "Close waits for hooks at most 5s")
		assert.Empty(t, liveIDs(srv), "the key was deleted all the same")
		close(block) // lets the dispatcher goroutine end
	})
}

// createThenHang creates the key on the fake but never answers until its
// context ends: a create Deepgram carried out whose answer Close cut off.
type createThenHang struct {
	lease.KeyService
	created chan string
}

func (c createThenHang) Create(ctx context.Context, s keys.Spec) (*keys.Key, error) {
	k, err := c.KeyService.Create(context.WithoutCancel(ctx), s)
	if err == nil {
		c.created <- k.ID
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

// When Close's context ends while a create is in flight, the create is
// cancelled and named in Close's error: its key may exist.
func TestCloseNamesCreatesItCutOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		api := createThenHang{srv.Client(), make(chan string, 1)}
		m, err := lease.New(api)
		require.NoError(t, err)
		acquired := make(chan error, 1)
		go func() { _, err := m.Acquire(context.Background(), "alice"); acquired <- err }()
		keyID := <-api.created
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err = m.Close(ctx)
		var ce *lease.CloseError
		require.ErrorAs(t, err, &ce)
		require.Len(t, ce.Unconfirmed, 1)
		assert.Equal(t, "alice", ce.Unconfirmed[0].User)
		assert.Contains(t, err.Error(), ce.Unconfirmed[0].LeaseID)
		assert.ErrorIs(t, <-acquired, context.Canceled)
		k := state(t, srv, keyID).Key
		mk, err := lease.ParseMarker(k.Comment, k.Tags)
		require.NoError(t, err)
		assert.Equal(t, ce.Unconfirmed[0].LeaseID, mk.Lease, "the survivor is findable by the lease ID Close names")
	})
}

// An Acquire whose context ends as its create answers returns the
// context's error, never a lease that has already ended.
func TestAcquireNeverReturnsAnEndedLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		m := newManager(t, srv)
		srv.SetLatency(keystest.OpCreate, time.Second)
		for range 20 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second) // ends as the answer arrives
			l, err := m.Acquire(ctx, "alice")
			cancel()
			if err == nil {
				select {
				case <-l.Done():
					t.Fatal("Acquire returned a lease that had already ended")
				default:
				}
				l.Release()
			}
		}
		require.NoError(t, m.Close(context.Background()))
		assert.Empty(t, liveIDs(srv))
	})
}

// A second Close waits for the first only as long as its own context
// allows, and once the first has finished every Close returns its result.
func TestSecondCloseHonoursItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		m := newManager(t, srv)
		l, err := m.Acquire(context.Background(), "alice")
		require.NoError(t, err)
		srv.Hang(keystest.OpDelete, 1) // the first Close waits for this delete
		l.Release()
		first := make(chan error, 1)
		go func() { first <- m.Close(context.Background()) }()
		synctest.Wait()

		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		err = m.Close(ctx)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, 100*time.Millisecond, time.Since(start))

		require.NoError(t, <-first, "the hung delete times out and is retried")
		cancelled, cancel2 := context.WithCancel(context.Background())
		cancel2()
		for range 50 {
			assert.NoError(t, m.Close(cancelled), "after the first Close, its result, whatever ctx")
		}
	})
}

// Keys Sweep removed after the deleter gave up on them are no longer
// counted or named by Close.
func TestCloseErrorForgetsKeysSweepRemoved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		m := newManager(t, srv)
		for range 3 {
			l, err := m.Acquire(context.Background(), "alice")
			require.NoError(t, err)
			srv.Fail(keystest.OpDelete, keystest.Fault{Status: 403})
			l.Release()
			synctest.Wait()
		}
		require.Len(t, m.Undeleted(), 3)
		time.Sleep(time.Minute) // past their server-side expiry
		n, err := m.Sweep(context.Background())
		require.NoError(t, err)
		assert.Equal(t, 3, n)
		assert.Empty(t, m.Undeleted())

		l, err := m.Acquire(context.Background(), "alice")
		require.NoError(t, err)
		srv.Fail(keystest.OpDelete, keystest.Fault{Status: 403})
		l.Release()
		err = m.Close(context.Background())
		var ce *lease.CloseError
		require.ErrorAs(t, err, &ce)
		assert.Equal(t, 1, ce.Total)
		require.Len(t, ce.Undeleted, 1)
		assert.Equal(t, l.ID(), ce.Undeleted[0].KeyID)
		assert.Contains(t, err.Error(), "lease: 1 keys could not be deleted")
		assert.Equal(t, uint64(4), m.Stats().DeleteFailed, "Stats still counts every failure")
	})
}
