package lease_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
		errs := 0
		for _, e := range log.list() {
			if e == "h:error" {
				errs++
			}
		}
		assert.Equal(t, 5, errs, "every failure reached the hooks")
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
			require.NoError(t, <-acquired)
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
		require.NoError(t, err)
		assert.Equal(t, []string{"acquire", "release"}, log.list())
		assert.Equal(t, lease.ReasonReleased, l.Reason())
	})
}
