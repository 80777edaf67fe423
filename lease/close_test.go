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

// A delete answered with a Retry-After longer than the key has left to
// live is given up at once (the key stops working by itself then): Close
// without a deadline returns at once instead of waiting an hour.
func TestCloseNeverWaitsPastKeyExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		m := newManager(t, srv.Client())
		l, err := m.Acquire(context.Background(), "alice")
		require.NoError(t, err)
		srv.Fail(keystest.OpDelete, keystest.Fault{Status: 429, RetryAfter: time.Hour})
		start := time.Now()
		err = m.Close(context.Background())
		assert.Zero(t, time.Since(start), "Close waited for the retry")
		var ce *lease.CloseError
		require.ErrorAs(t, err, &ce)
		require.Len(t, ce.Undeleted, 1)
		assert.Equal(t, l.KeyID(), ce.Undeleted[0].KeyID)
		assert.Equal(t, l.ServerExpires(), ce.Undeleted[0].Expires)
		assert.ErrorContains(t, ce.Undeleted[0].Err, "would come after the key expires")
		assert.Equal(t, 1, countOps(srv, keystest.OpDelete))
	})
}

// stuckService ignores its context: its Create and Delete return only
// when the test lets them go.
type stuckService struct {
	lease.KeyService
	stuck   chan struct{} // closed to let every call go
	entered chan string   // each stuck call's op
}

func (s stuckService) Create(ctx context.Context, spec keys.Spec) (*keys.Key, error) {
	s.entered <- "create"
	<-s.stuck
	return s.KeyService.Create(context.Background(), spec)
}

func (s stuckService) Delete(ctx context.Context, id string) error {
	s.entered <- "delete"
	<-s.stuck
	return s.KeyService.Delete(context.Background(), id)
}

// Close returns when its context ends, whatever the KeyService does, and
// names what it leaves: the key being deleted and the create in flight. A
// create that answers later has its key reported, not lost.
func TestCloseReturnsWhenItsContextEndsWhateverTheService(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		api := stuckService{srv.Client(), make(chan struct{}), make(chan string, 2)}
		var final []string
		m := newManager(t, api, lease.WithHooks(lease.Hooks{OnError: func(e lease.Event) {
			if e.Final {
				final = append(final, e.KeyID)
			}
		}}))
		// A lease whose key is being deleted when Close is called.
		go func() {
			l, err := m.Acquire(context.Background(), "alice")
			if assert.NoError(t, err) {
				l.Release()
			}
		}()
		assert.Equal(t, "create", <-api.entered)
		api.stuck <- struct{}{} // let this one create go
		assert.Equal(t, "delete", <-api.entered)
		// And an Acquire whose create is in flight.
		acquired := make(chan error, 1)
		go func() { _, err := m.Acquire(context.Background(), "bob"); acquired <- err }()
		assert.Equal(t, "create", <-api.entered)

		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := m.Close(ctx)
		assert.Equal(t, 100*time.Millisecond, time.Since(start), "Close returned when its context ended")
		var ce *lease.CloseError
		require.ErrorAs(t, err, &ce)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		require.Len(t, ce.Undeleted, 1, "the key being deleted")
		require.Len(t, ce.Unconfirmed, 1, "the create in flight")
		assert.Equal(t, "bob", ce.Unconfirmed[0].User)

		close(api.stuck) // the service answers at last
		assert.ErrorIs(t, <-acquired, lease.ErrClosed)
		synctest.Wait()
		// alice's delete succeeded late: no longer undeleted. bob's key,
		// created after Close gave up, is listed and reported, not lost.
		und := m.Undeleted()
		require.Len(t, und, 1)
		assert.Equal(t, "bob", und[0].User)
		assert.Equal(t, keystest.StatusActive, state(t, srv, und[0].KeyID).Status)
		assert.Len(t, final, 2, "alice's key when Close gave up, bob's when it arrived")
		assert.Len(t, liveIDs(srv), 1, "only bob's key, which expires by itself")
	})
}

// Flush waits for the keys of leases ended before it, outside any synctest
// bubble, so a test can assert on the fake right after it.
func TestFlushWaitsForDeletions(t *testing.T) {
	srv := keystest.NewServer(t)
	m := newManager(t, srv.Client(), lease.WithMaxLeases(10, 10))
	srv.SetLatency(keystest.OpDelete, 20*time.Millisecond)
	var ids []string
	for range 3 {
		l, err := m.Acquire(context.Background(), "alice")
		require.NoError(t, err)
		ids = append(ids, l.KeyID())
		l.Release()
	}
	live, err := m.Acquire(context.Background(), "alice")
	require.NoError(t, err)
	require.NoError(t, m.Flush(context.Background()))
	for _, id := range ids {
		assert.Equal(t, keystest.StatusDeleted, state(t, srv, id).Status)
	}
	assert.Equal(t, keystest.StatusActive, state(t, srv, live.KeyID()).Status, "Flush ends no live lease")
	assert.Zero(t, m.Stats().DeletePending)
}

// Flush returns when its context ends, saying how many deletions are left.
func TestFlushHonoursItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		m := newManager(t, srv.Client())
		l, err := m.Acquire(context.Background(), "alice")
		require.NoError(t, err)
		srv.SetLatency(keystest.OpDelete, 5*time.Second)
		l.Release()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		err = m.Flush(ctx)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.ErrorContains(t, err, "1 keys still pending deletion")
		require.NoError(t, m.Flush(context.Background()))
		assert.Equal(t, 5*time.Second, time.Since(start))
		assert.Equal(t, keystest.StatusDeleted, state(t, srv, l.KeyID()).Status)
	})
}

// Done is closed only once the key is with the deleter, so a Flush after
// <-Done() covers it (here the lease ends by its context, on another
// goroutine).
func TestFlushAfterDoneCoversTheKey(t *testing.T) {
	srv := fake(t)
	m := newManager(t, srv.Client(), lease.WithMaxLeases(10, 10))
	// A stress test: with Done closed before the hand-off, about one
	// iteration in 500 sees the key still live.
	for range 6000 {
		ctx, cancel := context.WithCancel(context.Background())
		l, err := m.Acquire(ctx, "alice")
		require.NoError(t, err)
		cancel()
		<-l.Done()
		require.NoError(t, m.Flush(context.Background()))
		if st := state(t, srv, l.KeyID()).Status; st != keystest.StatusDeleted {
			t.Fatalf("key %s is %s after <-Done() and Flush", l.KeyID(), st)
		}
	}
}

// createLate creates the key at once but answers only after wait, ignoring
// its context: a create whose caller gives up first. With err set it
// creates nothing and answers err.
type createLate struct {
	lease.KeyService
	wait time.Duration
	err  error // answered instead of the key, if set
}

func (c createLate) Create(ctx context.Context, s keys.Spec) (*keys.Key, error) {
	if c.err != nil {
		time.Sleep(c.wait)
		return nil, c.err
	}
	k, err := c.KeyService.Create(context.Background(), s)
	time.Sleep(c.wait)
	return k, err
}

// A Flush after an Acquire that gave up on its create waits for the key
// the create brings later, and deletes it.
func TestFlushWaitsForAnAbandonedCreate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		m := newManager(t, createLate{KeyService: srv.Client(), wait: 50 * time.Millisecond})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		_, err := m.Acquire(ctx, "alice")
		require.ErrorIs(t, err, context.DeadlineExceeded)
		start := time.Now()
		require.NoError(t, m.Flush(context.Background()))
		assert.Equal(t, 40*time.Millisecond, time.Since(start), "Flush waited for the create")
		assert.Empty(t, liveIDs(srv), "and for the deletion of its key")
		assert.Zero(t, m.Usage("alice").Live)
	})
}

// A refusal by Deepgram that arrives after the caller left is counted and
// reported as a refusal, like one the caller sees.
func TestAbandonedCreateRefusedByDeepgramIsDenied(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		refusal := &keys.APIError{StatusCode: 429, RetryAfter: 2 * time.Second}
		var denied []lease.Event
		m := newManager(t, createLate{KeyService: srv.Client(), wait: 50 * time.Millisecond, err: refusal},
			lease.WithHooks(lease.Hooks{OnDenied: func(e lease.Event) { denied = append(denied, e) }}))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		_, err := m.Acquire(ctx, "alice")
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.NoError(t, m.Flush(context.Background()))
		require.Len(t, denied, 1)
		assert.ErrorIs(t, denied[0].Err, lease.ErrDenied)
		assert.Equal(t, uint64(1), m.Stats().Denied)
		assert.Zero(t, m.Stats().Errors)
	})
}
