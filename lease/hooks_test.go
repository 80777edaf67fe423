package lease_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
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

// hookLog records which hooks ran, in order, safely from any goroutine.
type hookLog struct {
	mu  sync.Mutex
	got []string
}

func (h *hookLog) add(s string) {
	h.mu.Lock()
	h.got = append(h.got, s)
	h.mu.Unlock()
}

func (h *hookLog) list() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.got...)
}

// recording returns hooks that log "<name>:<event>" for every event.
func (h *hookLog) recording(name string) lease.Hooks {
	rec := func(kind string) func(lease.Event) { return func(lease.Event) { h.add(name + ":" + kind) } }
	return lease.Hooks{OnAcquire: rec("acquire"), OnRelease: rec("release"), OnDenied: rec("denied"), OnError: rec("error"), OnLeak: rec("leak")}
}

// Each hook has run by the time the call that caused its event returns,
// outside any synctest bubble and without waiting: a test can assert on
// its hooks right after Acquire or Release.
func TestHooksRunBeforeTheCallReturns(t *testing.T) {
	srv := keystest.NewServer(t)
	var log hookLog
	m := newManager(t, srv.Client(), lease.WithMaxLeases(10, 1), lease.WithHooks(log.recording("h")))
	l, err := m.Acquire(context.Background(), "alice")
	require.NoError(t, err)
	assert.Equal(t, []string{"h:acquire"}, log.list(), "after Acquire")
	_, err = m.Acquire(context.Background(), "alice")
	require.ErrorIs(t, err, lease.ErrDenied)
	assert.Equal(t, []string{"h:acquire", "h:denied"}, log.list(), "after a refused Acquire")
	l.Release()
	assert.Equal(t, []string{"h:acquire", "h:denied", "h:release"}, log.list(), "after Release")
}

// WithHooks combines several Hooks, and several WithHooks options, in the
// order given.
func TestWithHooksCombinesInOrder(t *testing.T) {
	srv := keystest.NewServer(t)
	var log hookLog
	m := newManager(t, srv.Client(), lease.WithHooks(log.recording("a"), log.recording("b")), lease.WithHooks(lease.Hooks{}, log.recording("c")))
	l, err := m.Acquire(context.Background(), "alice")
	require.NoError(t, err)
	l.Release()
	assert.Equal(t, []string{"a:acquire", "b:acquire", "c:acquire", "a:release", "b:release", "c:release"}, log.list())
}

// A hook that panics is recovered and counted; later hooks of the same
// event, the caller and the deletion all go on.
func TestHookPanicIsCountedAndStopsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		var log hookLog
		boom := lease.Hooks{
			OnAcquire: func(lease.Event) { panic("hook bug") },
			OnRelease: func(lease.Event) { panic(fmt.Errorf("another hook bug")) },
		}
		m := newManager(t, srv.Client(), lease.WithHooks(boom, log.recording("after")))
		l, err := m.Acquire(context.Background(), "alice")
		require.NoError(t, err)
		l.Release()
		synctest.Wait()
		assert.Equal(t, []string{"after:acquire", "after:release"}, log.list(), "the hooks after the panicking one ran")
		assert.Equal(t, keystest.StatusDeleted, state(t, srv, l.KeyID()).Status)
		assert.Equal(t, uint64(2), m.Stats().HookPanics)
	})
}

// A hook that calls runtime.Goexit (t.FailNow in a hook) ends only the
// goroutine it runs on. On the deleter, the goroutine is replaced: the
// keys queued behind it are still deleted, later events still reach the
// hooks, and Close returns.
func TestHookGoexitOnTheDeleterLosesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		var log hookLog
		exits := lease.Hooks{OnError: func(lease.Event) { runtime.Goexit() }}
		m := newManager(t, srv.Client(), lease.WithDeleteConcurrency(1), lease.WithMaxLeases(10, 10), lease.WithHooks(log.recording("h"), exits))
		var ls []*lease.Lease
		for i := range 5 {
			l, err := m.Acquire(context.Background(), fmt.Sprint("u", i))
			require.NoError(t, err)
			ls = append(ls, l)
		}
		// The first delete is refused for good (no retry timer will start
		// a worker again), the next four fail once: each OnError ends the
		// only worker.
		srv.Fail(keystest.OpDelete, keystest.Fault{Status: 403})
		srv.Fail(keystest.OpDelete, keystest.Fault{Status: 503, Times: 4})
		for _, l := range ls {
			l.Release()
		}
		err := m.Close(context.Background())
		var ce *lease.CloseError
		require.ErrorAs(t, err, &ce)
		require.Len(t, ce.Undeleted, 1, "only the refused key")
		for _, l := range ls {
			if l.KeyID() != ce.Undeleted[0].KeyID {
				assert.Equal(t, keystest.StatusDeleted, state(t, srv, l.KeyID()).Status)
			}
		}
		assert.Equal(t, 5, countHook(log.list(), "h:error"), "every failure reached the hooks")
	})
}

// An OnAcquire hook that calls runtime.Goexit ends the caller's goroutine,
// but the lease it announced is armed: it still ends (by its TTL), its
// OnRelease still fires, and its key is deleted.
func TestHookGoexitInAcquireLeavesTheLeaseManaged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		var log hookLog
		exits := lease.Hooks{OnAcquire: func(lease.Event) { runtime.Goexit() }}
		m := newManager(t, srv.Client(), lease.WithTTL(10*time.Second), lease.WithHooks(log.recording("h"), exits))
		returned := make(chan bool, 1)
		go func() {
			normal := false
			defer func() { returned <- normal }() // runs on Goexit too
			_, _ = m.Acquire(context.Background(), "alice")
			normal = true
		}()
		assert.False(t, <-returned, "Acquire's goroutine was ended by the hook")
		require.Len(t, liveIDs(srv), 1)
		id := liveIDs(srv)[0]
		time.Sleep(10 * time.Second)
		synctest.Wait()
		assert.Equal(t, []string{"h:acquire", "h:release"}, log.list())
		assert.Equal(t, keystest.StatusDeleted, state(t, srv, id).Status)
		assert.Equal(t, lease.Usage{Acquired: 1, Released: 1}, m.Usage("alice"))
		require.NoError(t, m.Close(context.Background()))
	})
}

// OnRelease never overtakes OnAcquire for the same lease: a lease ended
// while its OnAcquire hook is still running (here by Close on another
// goroutine, and by Manager.Release from inside the hook) has its
// OnRelease delivered once OnAcquire returns.
func TestOnAcquireComesBeforeOnRelease(t *testing.T) {
	t.Run("Close during OnAcquire", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			srv := fake(t)
			var log hookLog
			inHook, unblock := make(chan struct{}), make(chan struct{})
			m := newManager(t, srv.Client(), lease.WithHooks(lease.Hooks{
				OnAcquire: func(lease.Event) { close(inHook); <-unblock; log.add("acquire") },
				OnRelease: func(e lease.Event) { log.add("release:" + e.Reason.String()) },
			}))
			acquired := make(chan error, 1)
			go func() { _, err := m.Acquire(context.Background(), "alice"); acquired <- err }()
			<-inHook
			require.NoError(t, m.Close(context.Background()), "Close ends the lease and deletes its key without waiting for the hook")
			assert.Empty(t, liveIDs(srv))
			assert.Empty(t, log.list(), "no OnRelease while OnAcquire runs")
			close(unblock)
			require.ErrorIs(t, <-acquired, lease.ErrClosed, "Acquire never returns a lease that ended")
			assert.Equal(t, []string{"acquire", "release:manager closed"}, log.list())
		})
	})
	t.Run("Release from inside OnAcquire", func(t *testing.T) {
		srv := keystest.NewServer(t)
		var log hookLog
		var m *lease.Manager
		m = newManager(t, srv.Client(), lease.WithHooks(lease.Hooks{
			OnAcquire: func(e lease.Event) { m.Release(e.LeaseID); log.add("acquire") },
			OnRelease: func(lease.Event) { log.add("release") },
		}))
		l, err := m.Acquire(context.Background(), "alice")
		assert.Nil(t, l, "Acquire never returns a lease that ended")
		assert.ErrorContains(t, err, "the lease ended (released) before Acquire could return it")
		assert.Equal(t, []string{"acquire", "release"}, log.list())
	})
}

// Events carry how long the call to Deepgram took and how long the lease
// lived; OnDelete reports each deletion, and has run by the time Flush
// returns.
func TestEventsCarryLatencyAndLifetime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		var acquired, released, deleted []lease.Event
		m := newManager(t, srv.Client(), lease.WithTTL(time.Minute), lease.WithHooks(lease.Hooks{
			OnAcquire: func(e lease.Event) { acquired = append(acquired, e) },
			OnRelease: func(e lease.Event) { released = append(released, e) },
			OnDelete:  func(e lease.Event) { deleted = append(deleted, e) },
		}))
		srv.SetLatency(keystest.OpCreate, 2*time.Second)
		srv.SetLatency(keystest.OpDelete, 3*time.Second)
		l, err := m.Acquire(context.Background(), "alice")
		require.NoError(t, err)
		require.Len(t, acquired, 1)
		assert.Equal(t, 2*time.Second, acquired[0].Latency, "the create's latency")
		time.Sleep(5 * time.Second)
		l.Release()
		require.Len(t, released, 1)
		assert.Equal(t, 5*time.Second, released[0].Lifetime)
		require.NoError(t, m.Flush(context.Background()))
		require.Len(t, deleted, 1, "OnDelete ran before Flush returned")
		assert.Equal(t, l.KeyID(), deleted[0].KeyID)
		assert.Equal(t, l.ID(), deleted[0].LeaseID)
		assert.Equal(t, 3*time.Second, deleted[0].Latency, "the delete's latency")
		assert.Equal(t, 1, deleted[0].Attempt)
		assert.Equal(t, uint64(1), m.Stats().Deleted)
	})
}

// A hook that calls runtime.Goexit on Close's own goroutine does not leave
// the Manager half-closed: the other leases still end and their keys are
// deleted, a later Close returns the result, and Acquire is refused.
func TestHookGoexitInCloseFinishesClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		var log hookLog
		exits := lease.Hooks{OnRelease: func(e lease.Event) {
			if e.Reason == lease.ReasonClosed {
				runtime.Goexit()
			}
		}}
		m := newManager(t, srv.Client(), lease.WithTTL(time.Hour), lease.WithMaxLeases(10, 10), lease.WithHooks(exits, log.recording("h")))
		for i := range 3 {
			_, err := m.Acquire(context.Background(), fmt.Sprint("u", i))
			require.NoError(t, err)
		}
		done := make(chan struct{})
		go func() { defer close(done); _ = m.Close(context.Background()) }()
		<-done // ended by the hook
		start := time.Now()
		require.NoError(t, m.Close(context.Background()), "a later Close returns the first one's result")
		assert.Zero(t, time.Since(start))
		assert.Empty(t, liveIDs(srv), "every key deleted")
		assert.Equal(t, 3, countHook(log.list(), "h:release"), "every lease's later hooks ran")
		_, err := m.Acquire(context.Background(), "u9")
		assert.ErrorIs(t, err, lease.ErrClosed)
	})
}

func countHook(events []string, want string) int {
	n := 0
	for _, e := range events {
		if e == want {
			n++
		}
	}
	return n
}

// A hook of a leaked lease that calls runtime.Goexit does not stop the
// leak check: every dropped lease is still ended within a second.
func TestHookGoexitInOnLeakKeepsTheLeakCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		m := newManager(t, srv.Client(), lease.WithTTL(time.Hour), lease.WithMaxLeases(10, 10),
			lease.WithHooks(lease.Hooks{OnLeak: func(lease.Event) { runtime.Goexit() }}))
		keep, err := m.Acquire(context.Background(), "keeper")
		require.NoError(t, err)
		defer keep.Release()
		drop := func(n int) {
			for range n {
				_, err := m.Acquire(context.Background(), "careless")
				require.NoError(t, err)
			}
		}
		drop(2)
		require.True(t, awaitLeaks(m, 2), "the collector did not find the dropped leases")
		time.Sleep(2 * time.Second)
		synctest.Wait()
		assert.Equal(t, uint64(2), m.Stats().Leaked, "both ended, though the first OnLeak ended its goroutine")
		drop(1)
		require.True(t, awaitLeaks(m, 3), "the collector did not find the third dropped lease")
		time.Sleep(2 * time.Second)
		synctest.Wait()
		assert.Equal(t, uint64(3), m.Stats().Leaked, "the leak check still runs")
		assert.Equal(t, 1, m.Stats().Live)
	})
}

// failingList is a KeyService whose List always fails.
type failingList struct{ lease.KeyService }

func (failingList) List(context.Context) ([]keys.Key, error) { return nil, errors.New("list is down") }

// A sweep OnError hook that calls runtime.Goexit does not stop periodic
// sweeping.
func TestHookGoexitInSweepErrorKeepsSweeping(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		var sweeps atomic.Int32
		m := newManager(t, failingList{srv.Client()}, lease.WithSweepInterval(time.Second), lease.WithHooks(lease.Hooks{OnError: func(e lease.Event) {
			if e.Op == "sweep" {
				sweeps.Add(1)
				runtime.Goexit()
			}
		}}))
		time.Sleep(5500 * time.Millisecond)
		synctest.Wait()
		assert.Equal(t, int32(5), sweeps.Load(), "a sweep every second")
		require.NoError(t, m.Close(context.Background()))
	})
}

// One hook's Goexit does not skip the hooks after it, for the same event
// (a metrics hook after the user's), nor OnLeak after OnRelease.
func TestHookGoexitDoesNotSkipLaterHooks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		var log hookLog
		exits := lease.Hooks{OnRelease: func(lease.Event) { runtime.Goexit() }}
		m := newManager(t, srv.Client(), lease.WithTTL(time.Hour), lease.WithHooks(exits, log.recording("metrics")))
		l, err := m.Acquire(context.Background(), "alice")
		require.NoError(t, err)
		done := make(chan struct{})
		go func() { defer close(done); l.Release() }()
		<-done
		func() {
			_, err := m.Acquire(context.Background(), "careless") // dropped
			require.NoError(t, err)
		}()
		require.True(t, awaitLeaks(m, 1))
		time.Sleep(time.Second)
		synctest.Wait()
		assert.Equal(t, []string{"metrics:acquire", "metrics:release", "metrics:acquire", "metrics:release", "metrics:leak"}, log.list())
	})
}

// OnAcquire's event says when the lease ends and when its key stops
// working, as the Lease does.
func TestAcquireEventCarriesExpiries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		var got lease.Event
		m := newManager(t, srv.Client(), lease.WithHooks(lease.Hooks{OnAcquire: func(e lease.Event) { got = e }}))
		l, err := m.Acquire(context.Background(), "alice")
		require.NoError(t, err)
		defer l.Release()
		assert.Equal(t, l.Expires(), got.Expires)
		assert.Equal(t, l.ServerExpires(), got.ServerExpires)
		assert.True(t, got.ServerExpires.After(got.Expires), "the key outlives the lease by the margin")
	})
}
