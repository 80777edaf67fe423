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
		m := newManager(t, s)
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
		err := m.Close(context.Background())
		wg.Wait()
		require.NoError(t, err, "trial %d", trial)
		require.Equal(t, int64(4), s.deleted.Load(), "trial %d: every key deleted before Close returned", trial)
	}
}

// Close's context bounds a periodic sweep that is in flight.
func TestCloseDoesNotWaitForARunningSweep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		m := newManager(t, srv.Client(), lease.WithSweepInterval(time.Hour))
		srv.Hang(keystest.OpList, 1)
		time.Sleep(time.Hour + time.Second) // the sweep runs; its list hangs
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		require.NoError(t, m.Close(ctx))
		assert.Zero(t, time.Since(start), "Close cancels the sweep instead of waiting for it")
		assert.Equal(t, 1, countOps(srv, keystest.OpList), "the sweep was running (its list hung)")
	})
}

// A hook that never returns delays Close by at most the hook grace period.
func TestStuckHookDoesNotHangClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		block := make(chan struct{})
		m := newManager(t, srv.Client(), lease.WithHooks(lease.Hooks{OnAcquire: func(lease.Event) { <-block }}))
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
		m := newManager(t, api)
		acquired := make(chan error, 1)
		go func() { _, err := m.Acquire(context.Background(), "alice"); acquired <- err }()
		keyID := <-api.created
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err := m.Close(ctx)
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

// cancelOnCreate cancels the caller's context during the create, so that
// the create's result and the end of the context arrive together.
type cancelOnCreate struct {
	lease.KeyService
	cancel context.CancelFunc
}

func (c *cancelOnCreate) Create(ctx context.Context, s keys.Spec) (*keys.Key, error) {
	k, err := c.KeyService.Create(ctx, s)
	c.cancel()
	return k, err
}

// An Acquire whose context ends as its create answers returns the
// context's error, never a lease (which would already be ending), and the
// key is deleted either way.
func TestAcquireNeverReturnsAnEndedLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		api := &cancelOnCreate{KeyService: srv.Client()}
		m := newManager(t, api, lease.WithMaxLeases(1000, 1000))
		// Which of the two arrives first in Acquire is up to the
		// scheduler; many tries cover both.
		for range 200 {
			ctx, cancel := context.WithCancel(context.Background())
			api.cancel = cancel
			l, err := m.Acquire(ctx, "alice")
			require.ErrorIs(t, err, context.Canceled)
			require.Nil(t, l)
			synctest.Wait()
		}
		require.NoError(t, m.Close(context.Background()))
		assert.Empty(t, liveIDs(srv), "every key was deleted")
		assert.Len(t, srv.Keys(), 201, "200 keys were created")
	})
}
