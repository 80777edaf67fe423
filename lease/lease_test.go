package lease_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/internal/testenv"
	"github.com/dglease/dglease/keys"
	"github.com/dglease/dglease/keys/keystest"
	"github.com/dglease/dglease/lease"
)

// fake starts an in-memory fake Deepgram (usable inside synctest bubbles).
func fake(t testing.TB, opts ...keystest.Option) *keystest.Server {
	t.Helper()
	return keystest.NewServer(t, append([]keystest.Option{keystest.WithoutListener()}, opts...)...)
}

// newManager builds a Manager on api (e.g. a fake's Client) without rate
// limits unless opts set them, closed when the test ends.
func newManager(t testing.TB, api lease.KeyService, opts ...lease.Option) *lease.Manager {
	t.Helper()
	m, err := lease.New(api, append([]lease.Option{lease.WithRateLimit(0, 1)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}

func liveIDs(srv *keystest.Server) []string {
	var ids []string
	for _, k := range srv.LiveKeys() {
		if k.ID != srv.AdminKeyID() {
			ids = append(ids, k.ID)
		}
	}
	return ids
}

func state(t *testing.T, srv *keystest.Server, id string) keystest.KeyState {
	t.Helper()
	k, ok := srv.Key(id)
	if !ok {
		t.Fatalf("key %s unknown to the fake", id)
	}
	return k
}

// loseCreates makes n Acquire calls for "alice" whose create answers the
// fake loses: each fails, and each leaves a marked key the Manager never
// learns of, as after a crash or a dropped connection.
func loseCreates(t *testing.T, srv *keystest.Server, m *lease.Manager, n int) {
	t.Helper()
	for range n {
		srv.LoseAnswer(keystest.OpCreate, 1)
		_, err := m.Acquire(context.Background(), "alice")
		require.Error(t, err)
	}
}

func countOps(srv *keystest.Server, op keystest.Op) int {
	n := 0
	for _, r := range srv.Requests() {
		if r.Op == op {
			n++
		}
	}
	return n
}

func TestAcquireIssuesScopedMarkedKeyWithServerExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		m := newManager(t, srv.Client(), lease.WithTTL(10*time.Second), lease.WithTags("svc:demo"))
		start := time.Now()
		l, err := m.Acquire(context.Background(), "user 42 ü")
		require.NoError(t, err)

		assert.Equal(t, "user 42 ü", l.User())
		assert.Len(t, l.Secret(), 40)
		assert.True(t, l.Revocable())
		assert.Len(t, l.ID(), 16, "the lease ID")
		assert.NotEqual(t, l.ID(), l.KeyID())
		assert.Equal(t, []string{"token", l.Secret()}, l.Subprotocol())
		assert.Equal(t, start.Add(10*time.Second), l.Expires())
		assert.Equal(t, []string{l.KeyID()}, liveIDs(srv))
		k := state(t, srv, l.KeyID()).Key
		assert.Equal(t, []string{"usage:write"}, k.Scopes)
		assert.Equal(t, start.Add(15*time.Second), k.Expires, "server-side expiry = TTL + margin")
		mk, err := lease.ParseMarker(k.Comment, k.Tags)
		require.NoError(t, err)
		assert.Equal(t, lease.Marker{Lease: l.ID(), Manager: lease.ManagerID(m), User: "user 42 ü"}, mk)
		assert.Contains(t, k.Tags, "svc:demo")
		select {
		case <-l.Done():
			t.Fatal("Done closed while the lease is live")
		default:
		}
		l.Release()
	})
}

// Every path to deletion, one subtest each.
func TestEveryPathDeletesTheKey(t *testing.T) {
	tests := []struct {
		name   string
		reason lease.Reason
		end    func(t *testing.T, m *lease.Manager, l *lease.Lease, cancel context.CancelFunc)
	}{
		{"release", lease.ReasonReleased, func(t *testing.T, m *lease.Manager, l *lease.Lease, cancel context.CancelFunc) {
			l.Release()
			l.Release() // idempotent
		}},
		{"context", lease.ReasonContext, func(t *testing.T, m *lease.Manager, l *lease.Lease, cancel context.CancelFunc) {
			cancel()
		}},
		{"ttl", lease.ReasonExpired, func(t *testing.T, m *lease.Manager, l *lease.Lease, cancel context.CancelFunc) {
			time.Sleep(10 * time.Second)
		}},
		{"close", lease.ReasonClosed, func(t *testing.T, m *lease.Manager, l *lease.Lease, cancel context.CancelFunc) {
			require.NoError(t, m.Close(context.Background()))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := fake(t)
				m := newManager(t, srv.Client(), lease.WithTTL(10*time.Second))
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				l, err := m.Acquire(ctx, "alice")
				require.NoError(t, err)
				time.Sleep(time.Second)
				synctest.Wait()
				require.Len(t, liveIDs(srv), 1, "nothing ends the lease early")

				tt.end(t, m, l, cancel)
				synctest.Wait()
				<-l.Done()
				assert.Equal(t, tt.reason, l.Reason())
				assert.Empty(t, liveIDs(srv))
				assert.Equal(t, 1, state(t, srv, l.KeyID()).Deletes, "exactly one successful delete")
				assert.Equal(t, keystest.StatusDeleted, state(t, srv, l.KeyID()).Status)
			})
		})
	}
}

func TestReleaseNeverWaitsOnTheNetwork(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		m := newManager(t, srv.Client())
		l, err := m.Acquire(context.Background(), "alice")
		require.NoError(t, err)
		srv.SetLatency(keystest.OpDelete, time.Hour)
		start := time.Now()
		l.Release()
		assert.Equal(t, start, time.Now(), "Release took fake time")
		<-l.Done()
		synctest.Wait()
		assert.Len(t, liveIDs(srv), 1, "the delete is still in flight")
		time.Sleep(time.Hour)
		synctest.Wait()
		// Every attempt timed out after 10s and was retried, until the key
		// passed its server-side expiry and the deleter gave up on it.
		assert.Equal(t, keystest.StatusExpired, state(t, srv, l.KeyID()).Status)
		assert.Zero(t, state(t, srv, l.KeyID()).Deletes)
		und := m.Undeleted()
		require.Len(t, und, 1)
		assert.Equal(t, l.KeyID(), und[0].KeyID)
		assert.ErrorContains(t, und[0].Err, "would come after the key expires on Deepgram's side")
	})
}

// A dropped lease is ended, its key deleted and OnLeak fired within a
// second of the collector finding it, with no further call on the Manager
// and long before its TTL.
func TestLeakedLeaseIsDeletedAndReported(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		leaked := make(chan lease.Event, 1)
		m := newManager(t, srv.Client(), lease.WithTTL(time.Minute), lease.WithHooks(lease.Hooks{OnLeak: func(e lease.Event) { leaked <- e }}))
		id := func() string {
			l, err := m.Acquire(context.Background(), "careless")
			require.NoError(t, err)
			return l.KeyID()
		}()
		start := time.Now()
		require.True(t, awaitLeaks(m, 1), "the dropped lease was not found by the garbage collector")
		synctest.Wait()
		require.Equal(t, 1, lease.QueuedLeaks(m), "found, and not ended by a pure read (Stats)")
		assert.Equal(t, keystest.StatusActive, state(t, srv, id).Status)
		time.Sleep(time.Second) // nothing calls the Manager
		synctest.Wait()
		ev := <-leaked
		assert.LessOrEqual(t, time.Since(start), time.Second, "ended within a second, not at its 1-minute TTL")
		assert.Equal(t, id, ev.KeyID)
		assert.Equal(t, lease.ReasonLeaked, ev.Reason)
		assert.Equal(t, keystest.StatusDeleted, state(t, srv, id).Status)
		assert.Equal(t, uint64(1), m.Usage("careless").Leaked)
	})
}

// A lease found leaked whose TTL passes before the leak check runs ends
// by its TTL timer, reported as leaked (not as expired).
func TestLeakedLeaseReachingItsTTLIsReportedLeaked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		ended := make(chan lease.Event, 1)
		m := newManager(t, srv.Client(), lease.WithTTL(1500*time.Millisecond), lease.WithHooks(lease.Hooks{OnRelease: func(e lease.Event) { ended <- e }}))
		time.Sleep(1200 * time.Millisecond) // the leak check, armed by Acquire, would run at 1 s after it
		func() {
			_, err := m.Acquire(context.Background(), "careless")
			require.NoError(t, err)
		}()
		// Acquired at 1.2 s: the TTL ends it at 2.7 s, the leak check runs at 2.2 s.
		// Let the leak check pass first with nothing found, then find the leak.
		time.Sleep(1100 * time.Millisecond) // 2.3 s: the check ran at 2.2 s, next at 3.2 s
		synctest.Wait()
		require.True(t, awaitLeaks(m, 1), "the dropped lease was not found by the garbage collector")
		require.Equal(t, 1, lease.QueuedLeaks(m))
		time.Sleep(500 * time.Millisecond) // 2.8 s: the TTL passed, the leak check has not run again
		synctest.Wait()
		ev := <-ended
		assert.Equal(t, lease.ReasonLeaked, ev.Reason)
		assert.Equal(t, uint64(1), m.Usage("careless").Leaked)
	})
}

// A Lease copied by value shares its leak detection: dropping the
// original while a copy is held is not a leak, and the copy releases.
func TestCopiedLeaseIsNotALeak(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		leaks := 0
		m := newManager(t, srv.Client(), lease.WithTTL(time.Minute), lease.WithHooks(lease.Hooks{OnLeak: func(lease.Event) { leaks++ }}))
		type session struct{ l lease.Lease }
		s := func() *session {
			p, err := m.Acquire(context.Background(), "alice")
			require.NoError(t, err)
			return &session{l: *p} // p is dropped here
		}()
		assert.False(t, awaitLeaks(m, 1), "the held copy was reported unreachable")
		time.Sleep(2 * time.Second)
		synctest.Wait()
		assert.Zero(t, leaks)
		assert.Equal(t, lease.Reason(0), s.l.Reason(), "the copy is still live")
		assert.Equal(t, keystest.StatusActive, state(t, srv, s.l.KeyID()).Status)
		s.l.Release()
		require.NoError(t, m.Flush(context.Background()))
		assert.Equal(t, keystest.StatusDeleted, state(t, srv, s.l.KeyID()).Status)
		assert.Equal(t, lease.ReasonReleased, s.l.Reason())
	})
}

func TestCallerGoneDuringCreateKeyIsDeletedOnArrival(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		m := newManager(t, srv.Client())
		srv.SetLatency(keystest.OpCreate, 3*time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		l, err := m.Acquire(ctx, "alice")
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Nil(t, l)
		assert.Equal(t, time.Second, time.Since(start), "Acquire returned when ctx ended")
		time.Sleep(5 * time.Second)
		synctest.Wait()
		all := srv.Keys()
		require.Len(t, all, 2, "admin key and the late key")
		assert.Equal(t, keystest.StatusDeleted, all[1].Status)
		assert.Equal(t, 1, all[1].Deletes)
		assert.Zero(t, m.Stats().Live)
	})
}

func TestCloseWaitsForCreatesInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		m := newManager(t, srv.Client())
		srv.SetLatency(keystest.OpCreate, 2*time.Second)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := m.Acquire(context.Background(), "alice")
			assert.ErrorIs(t, err, lease.ErrClosed)
		}()
		synctest.Wait()
		require.NoError(t, m.Close(context.Background()))
		wg.Wait()
		assert.Empty(t, liveIDs(srv))
		_, err := m.Acquire(context.Background(), "bob")
		assert.ErrorIs(t, err, lease.ErrClosed)
	})
}

func TestDeleterRetriesTransientFailures(t *testing.T) {
	for _, status := range []int{500, 502, 503, 429} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := fake(t)
				var errs []lease.Event
				var mu sync.Mutex
				m := newManager(t, srv.Client(), lease.WithHooks(lease.Hooks{OnError: func(e lease.Event) { mu.Lock(); errs = append(errs, e); mu.Unlock() }}))
				l, err := m.Acquire(context.Background(), "alice")
				require.NoError(t, err)
				srv.Fail(keystest.OpDelete, keystest.Fault{Status: status, Times: 3})
				l.Release()
				time.Sleep(5 * time.Second)
				synctest.Wait()
				assert.Empty(t, liveIDs(srv))
				assert.Equal(t, 4, countOps(srv, keystest.OpDelete))
				assert.Equal(t, 1, state(t, srv, l.KeyID()).Deletes)
				st := m.Stats()
				assert.Equal(t, uint64(1), st.Deleted)
				assert.Equal(t, uint64(4), st.DeleteAttempts)
				assert.Zero(t, st.DeleteFailed)
				mu.Lock()
				defer mu.Unlock()
				require.Len(t, errs, 3)
				for i, e := range errs {
					assert.Equal(t, i+1, e.Attempt)
					assert.False(t, e.Final)
					assert.Equal(t, "delete", e.Op)
				}
			})
		})
	}
}

func TestDeleterHonoursRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		m := newManager(t, srv.Client())
		l, err := m.Acquire(context.Background(), "alice")
		require.NoError(t, err)
		srv.Fail(keystest.OpDelete, keystest.Fault{Status: 429, RetryAfter: 7 * time.Second})
		l.Release()
		synctest.Wait()
		time.Sleep(6 * time.Second)
		synctest.Wait()
		assert.Len(t, liveIDs(srv), 1, "retried before Retry-After")
		time.Sleep(time.Second + time.Millisecond)
		synctest.Wait()
		assert.Empty(t, liveIDs(srv))
		assert.Equal(t, 2, countOps(srv, keystest.OpDelete))
	})
}

func TestBackoffGrowsWithJitter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		m := newManager(t, srv.Client(), lease.WithTTL(time.Minute))
		l, err := m.Acquire(context.Background(), "alice")
		require.NoError(t, err)
		srv.Fail(keystest.OpDelete, keystest.Fault{Status: 503, Times: 6})
		start := time.Now()
		l.Release()
		time.Sleep(time.Minute)
		synctest.Wait()
		var times []time.Duration
		for _, r := range srv.Requests() {
			if r.Op == keystest.OpDelete {
				times = append(times, r.Time.Sub(start))
			}
		}
		require.Len(t, times, 7)
		for i := 1; i < len(times); i++ {
			ceiling := 250 * time.Millisecond << (i - 1)
			gap := times[i] - times[i-1]
			assert.GreaterOrEqual(t, gap, ceiling/2, "gap %d", i)
			assert.LessOrEqual(t, gap, ceiling, "gap %d", i)
		}
	})
}

func TestUnauthorizedDeleteIsNotRetriedAndIsReported(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		final := make(chan lease.Event, 1)
		m := newManager(t, srv.Client(), lease.WithHooks(lease.Hooks{OnError: func(e lease.Event) {
			if e.Final {
				final <- e
			}
		}}))
		l, err := m.Acquire(context.Background(), "alice")
		require.NoError(t, err)
		require.True(t, srv.RevokeKey(srv.AdminKeyID()))
		l.Release()
		synctest.Wait()
		e := <-final
		assert.ErrorIs(t, e.Err, keys.ErrUnauthorized)
		assert.Equal(t, 1, e.Attempt)
		assert.Equal(t, 1, countOps(srv, keystest.OpDelete))

		err = m.Close(context.Background())
		var ce *lease.CloseError
		require.ErrorAs(t, err, &ce)
		require.Len(t, ce.Undeleted, 1)
		assert.Equal(t, l.KeyID(), ce.Undeleted[0].KeyID)
		require.True(t, testenv.NoSecret(t, "Close's error", err.Error(), l.Secret())) // before anything prints it
		assert.Contains(t, err.Error(), l.KeyID())
		assert.Equal(t, []string{l.KeyID()}, liveIDs(srv), "the key survives, named by Close, until it expires")
		time.Sleep(15 * time.Second)
		assert.Empty(t, liveIDs(srv), "the server-side expiry ends it")
	})
}

func TestDeleterGivesUpAtServerExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		var gaveUp time.Time
		m := newManager(t, srv.Client(), lease.WithTTL(10*time.Second), lease.WithHooks(lease.Hooks{OnError: func(e lease.Event) {
			if e.Final {
				gaveUp = time.Now()
			}
		}}))
		l, err := m.Acquire(context.Background(), "alice")
		require.NoError(t, err)
		srv.Fail(keystest.OpDelete, keystest.Fault{Status: 503, Times: -1})
		l.Release()
		time.Sleep(time.Minute)
		synctest.Wait()
		require.False(t, gaveUp.IsZero(), "the deleter gave up")
		assert.True(t, gaveUp.Before(l.ServerExpires()), "it gave up before the key's expiry, not after waiting past it")
		attempts := countOps(srv, keystest.OpDelete)
		time.Sleep(time.Hour)
		synctest.Wait()
		assert.Equal(t, attempts, countOps(srv, keystest.OpDelete), "no retries after the key expired")
		u := m.Undeleted()
		require.Len(t, u, 1)
		assert.Equal(t, l.KeyID(), u[0].KeyID)
		assert.Contains(t, u[0].Err.Error(), "would come after the key expires on Deepgram's side")
		assert.Empty(t, liveIDs(srv))

		srv.ClearFaults(keystest.OpDelete)
		n, err := m.Sweep(context.Background())
		require.NoError(t, err)
		assert.Equal(t, 1, n, "Sweep removes the expired record")
		assert.Equal(t, keystest.StatusDeleted, state(t, srv, l.KeyID()).Status)
	})
}

func TestCloseReportsKeysLeftWhenItsContextEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		m := newManager(t, srv.Client())
		var ids []string
		for i := range 3 {
			l, err := m.Acquire(context.Background(), fmt.Sprint("u", i))
			require.NoError(t, err)
			ids = append(ids, l.KeyID())
		}
		srv.Fail(keystest.OpDelete, keystest.Fault{Status: 503, Times: -1})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		err := m.Close(ctx)
		var ce *lease.CloseError
		require.ErrorAs(t, err, &ce)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		var got []string
		for _, u := range ce.Undeleted {
			got = append(got, u.KeyID)
		}
		assert.ElementsMatch(t, ids, got)
		assert.ElementsMatch(t, ids, liveIDs(srv), "survivors are exactly the keys named")
		assert.Equal(t, err, m.Close(context.Background()), "Close again returns the same result")
	})
}

func TestRateLimitDeniesBeforeAnyCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		denied := make(chan lease.Event, 10)
		m := newManager(t, srv.Client(), lease.WithRateLimit(time.Second, 2),
			lease.WithHooks(lease.Hooks{OnDenied: func(e lease.Event) { denied <- e }}))
		for range 2 {
			l, err := m.Acquire(context.Background(), "alice")
			require.NoError(t, err)
			l.Release()
		}
		creates := countOps(srv, keystest.OpCreate)
		_, err := m.Acquire(context.Background(), "alice")
		require.ErrorIs(t, err, lease.ErrDenied)
		var de *lease.DeniedError
		require.ErrorAs(t, err, &de)
		assert.Equal(t, lease.LimitRate, de.Limit)
		assert.Equal(t, time.Second, de.RetryAfter)
		assert.Equal(t, creates, countOps(srv, keystest.OpCreate), "a denied Acquire creates nothing")
		synctest.Wait()
		e := <-denied
		assert.Equal(t, "alice", e.User)
		assert.Equal(t, time.Second, e.RetryAfter)

		l, err := m.Acquire(context.Background(), "bob")
		require.NoError(t, err, "limits are per user")
		l.Release()
		time.Sleep(time.Second)
		l, err = m.Acquire(context.Background(), "alice")
		require.NoError(t, err, "allowed again after RetryAfter")
		l.Release()
		assert.Equal(t, lease.Usage{Acquired: 3, Released: 3, Denied: 1}, m.Usage("alice"))
	})
}

func TestCapsDeny(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		m := newManager(t, srv.Client(), lease.WithMaxLeases(3, 2))
		a1, err := m.Acquire(context.Background(), "alice")
		require.NoError(t, err)
		_, err = m.Acquire(context.Background(), "alice")
		require.NoError(t, err)
		_, err = m.Acquire(context.Background(), "alice")
		var de *lease.DeniedError
		require.ErrorAs(t, err, &de)
		assert.Equal(t, lease.LimitUserCap, de.Limit)
		_, err = m.Acquire(context.Background(), "bob")
		require.NoError(t, err)
		_, err = m.Acquire(context.Background(), "carol")
		require.ErrorAs(t, err, &de)
		assert.Equal(t, lease.LimitTotalCap, de.Limit)
		a1.Release()
		_, err = m.Acquire(context.Background(), "carol")
		require.NoError(t, err, "a released lease frees its slot")
	})
}

func TestBadInput(t *testing.T) {
	srv := fake(t)
	m := newManager(t, srv.Client())
	tests := []struct {
		name string
		call func() error
		want string
	}{
		{"empty user", func() error { _, err := m.Acquire(context.Background(), ""); return err }, "lease: user must not be empty"},
		{"long user", func() error { _, err := m.Acquire(context.Background(), strings.Repeat("x", 129)); return err }, "at most 128"},
		{"invalid utf-8", func() error { _, err := m.Acquire(context.Background(), "\xc3"); return err }, "valid UTF-8"},
		{"nil ctx", func() error {
			var ctx context.Context
			_, err := m.Acquire(ctx, "a")
			return err
		}, "non-nil context"},
		{"nil api", func() error { _, err := lease.New(nil); return err }, "needs a KeyService"},
		{"nil client", func() error { var c *keys.Client; _, err := lease.New(c); return err }, "nil *keys.Client"},
		{"admin scope", func() error { _, err := lease.New(srv.Client(), lease.WithScopes("admin")); return err }, "management rights"},
		{"keys scope", func() error { _, err := lease.New(srv.Client(), lease.WithScopes("keys:write")); return err }, "management rights"},
		{"no scopes", func() error { _, err := lease.New(srv.Client(), lease.WithScopes()); return err }, "at least one scope"},
		{"zero ttl", func() error { _, err := lease.New(srv.Client(), lease.WithTTL(0)); return err }, "must be positive"},
		{"long ttl", func() error { _, err := lease.New(srv.Client(), lease.WithTTL(2*time.Hour)); return err }, "outside 1s..1h"},
		{"grant ttl", func() error {
			_, err := lease.New(srv.Client(), lease.WithGrantTokens(), lease.WithTTL(500*time.Millisecond))
			return err
		}, "grant token TTL"},
		{"grant with scopes", func() error {
			_, err := lease.New(srv.Client(), lease.WithGrantTokens(), lease.WithScopes("usage:write"))
			return err
		}, "cannot be combined"},
		{"grant with tags", func() error {
			_, err := lease.New(srv.Client(), lease.WithGrantTokens(), lease.WithTags("svc"))
			return err
		}, "cannot be combined"},
		{"bad burst", func() error { _, err := lease.New(srv.Client(), lease.WithRateLimit(time.Second, 0)); return err }, "burst"},
		{"negative rate interval", func() error { _, err := lease.New(srv.Client(), lease.WithRateLimit(-time.Second, 1)); return err }, "must not be negative"},
		{"nil Flush context", func() error {
			var ctx context.Context
			return m.Flush(ctx)
		}, "non-nil context"},
		{"bad caps", func() error { _, err := lease.New(srv.Client(), lease.WithMaxLeases(1, 2)); return err }, "exceeds"},
		{"nil option", func() error { _, err := lease.New(srv.Client(), nil); return err }, "nil Option"},
		{"marker tag", func() error { _, err := lease.New(srv.Client(), lease.WithTags("dglease:x")); return err }, "must not start"},
		{"long tag", func() error { _, err := lease.New(srv.Client(), lease.WithTags(strings.Repeat("t", 129))); return err }, "limits tags to 128"},
		{"tag not UTF-8", func() error { _, err := lease.New(srv.Client(), lease.WithTags("a\xffb")); return err }, "valid UTF-8"},
		{"blank tag", func() error { _, err := lease.New(srv.Client(), lease.WithTags("  ")); return err }, "empty or only spaces"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.True(t, strings.HasPrefix(err.Error(), "lease: "), err.Error())
		})
	}
	assert.Zero(t, countOps(srv, keystest.OpCreate))
}

func TestGrantTokens(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		m := newManager(t, srv.Client(), lease.WithGrantTokens(), lease.WithTTL(30*time.Second))
		start := time.Now()
		l, err := m.Acquire(context.Background(), "alice")
		require.NoError(t, err)
		assert.False(t, l.Revocable())
		assert.Empty(t, l.KeyID(), "a grant token has no key ID")
		assert.Equal(t, []string{"bearer", l.Secret()}, l.Subprotocol())
		assert.Equal(t, 2, strings.Count(l.Secret(), "."), "a JWT")
		assert.Equal(t, start.Add(30*time.Second), l.Expires())
		l.Release()
		synctest.Wait()
		assert.Equal(t, lease.ReasonReleased, l.Reason())
		assert.Zero(t, countOps(srv, keystest.OpDelete), "a grant token cannot be deleted")
		assert.Zero(t, countOps(srv, keystest.OpCreate))
		assert.Equal(t, uint64(1), m.Usage("alice").Released)
	})
}

func TestSweepDeletesOnlyExpiredMarkedKeys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		m := newManager(t, srv.Client(), lease.WithTTL(10*time.Second))
		// A key whose create answer was lost: Acquire fails, the key
		// exists with the marker.
		loseCreates(t, srv, m, 1)
		lost := srv.Keys()[1].Key
		// Keys that are not ours, expired or not.
		foreign := srv.AddKey(keys.Spec{Comment: "someone else's", Scopes: []string{"usage:write"}, TTL: time.Second})
		forged := srv.AddKey(keys.Spec{Comment: "dglease lease=x mgr=y user=z", Tags: []string{"dglease"}, Scopes: []string{"usage:write"}, TTL: time.Second})
		// A live lease of ours.
		live, err := m.Acquire(context.Background(), "bob")
		require.NoError(t, err)
		defer live.Release()

		n, err := m.Sweep(context.Background())
		require.NoError(t, err)
		assert.Zero(t, n, "nothing expired yet")

		time.Sleep(16 * time.Second) // past the lost key's server-side expiry
		live2, err := m.Acquire(context.Background(), "carol")
		require.NoError(t, err)
		defer live2.Release()

		other := newManager(t, srv.Client()) // another replica
		n, err = other.Sweep(context.Background())
		require.NoError(t, err)
		assert.Equal(t, 1, n)
		assert.Equal(t, keystest.StatusDeleted, state(t, srv, lost.ID).Status)
		assert.Equal(t, keystest.StatusExpired, state(t, srv, foreign.ID).Status, "never touched")
		assert.Equal(t, keystest.StatusExpired, state(t, srv, forged.ID).Status, "never touched")
		assert.Equal(t, keystest.StatusActive, state(t, srv, live2.KeyID()).Status)
	})
}

func TestSweepDryRunAndProgress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		m := newManager(t, srv.Client(), lease.WithTTL(time.Second))
		loseCreates(t, srv, m, 3)
		time.Sleep(time.Minute)
		res, err := lease.Sweep(context.Background(), srv.Client(), lease.SweepOptions{DryRun: true})
		require.NoError(t, err)
		assert.Len(t, res.Expired, 3)
		assert.Zero(t, res.Deleted)
		assert.Zero(t, countOps(srv, keystest.OpDelete))

		var calls []int
		res, err = lease.Sweep(context.Background(), srv.Client(), lease.SweepOptions{Concurrency: 1, Progress: func(done, total int) {
			assert.Equal(t, 3, total)
			calls = append(calls, done)
		}})
		require.NoError(t, err)
		assert.Equal(t, 3, res.Deleted)
		assert.Equal(t, []int{1, 2, 3}, calls)
	})
}

func TestPeriodicSweep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		m := newManager(t, srv.Client(), lease.WithTTL(time.Second), lease.WithSweepInterval(time.Minute))
		loseCreates(t, srv, m, 1)
		time.Sleep(time.Minute + time.Second)
		synctest.Wait()
		assert.Empty(t, liveIDs(srv))
		assert.Equal(t, keystest.StatusDeleted, srv.Keys()[1].Status)
		require.NoError(t, m.Close(context.Background()))
	})
}

func TestConcurrentAcquireRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		m := newManager(t, srv.Client(), lease.WithMaxLeases(1000, 10))
		var wg sync.WaitGroup
		for i := range 200 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				l, err := m.Acquire(context.Background(), fmt.Sprint("u", i%20))
				if !assert.NoError(t, err) {
					return
				}
				go l.Release()
				l.Release()
			}()
		}
		wg.Wait()
		require.NoError(t, m.Close(context.Background()))
		assert.Empty(t, liveIDs(srv))
		for _, k := range srv.Keys()[1:] {
			assert.Equal(t, 1, k.Deletes, k.Key.ID)
		}
		st := m.Stats()
		assert.Equal(t, uint64(200), st.Acquired)
		assert.Equal(t, uint64(200), st.Deleted)
		assert.Zero(t, st.Live)
	})
}

func TestSecretsNeverPrinted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		var events []lease.Event
		var mu sync.Mutex
		rec := func(e lease.Event) { mu.Lock(); events = append(events, e); mu.Unlock() }
		m := newManager(t, srv.Client(), lease.WithHooks(lease.Hooks{OnAcquire: rec, OnRelease: rec, OnError: rec}))
		l, err := m.Acquire(context.Background(), "alice")
		require.NoError(t, err)
		secret := l.Secret()
		srv.Fail(keystest.OpDelete, keystest.Fault{Status: http.StatusServiceUnavailable})
		l.Release()
		time.Sleep(time.Second)
		synctest.Wait()
		var b strings.Builder
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
			fmt.Fprintf(&b, verb+"\n", l)
			fmt.Fprintf(&b, verb+"\n", *l)
			fmt.Fprintf(&b, verb+"\n", []*lease.Lease{l})
		}
		mu.Lock()
		for _, e := range events {
			fmt.Fprintf(&b, "%+v %#v\n", e, e)
		}
		mu.Unlock()
		fmt.Fprintf(&b, "%+v", m.Stats())
		out := b.String()
		testenv.NoSecret(t, "fmt output of leases, events and stats", out, secret, srv.AdminKey())
		assert.True(t, strings.Contains(out, "[REDACTED]"), "the output shows [REDACTED]")
	})
}

func TestDetachedLeaseIsReleasedByID(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		leaks := 0
		m := newManager(t, srv.Client(), lease.WithHooks(lease.Hooks{OnLeak: func(lease.Event) { leaks++ }}))
		id, keyID := func() (string, string) {
			l, err := m.Acquire(context.Background(), "alice")
			require.NoError(t, err)
			l.Detach()
			l.Detach() // idempotent
			return l.ID(), l.KeyID()
		}()
		assert.False(t, awaitLeaks(m, 1), "a detached lease is not found as leaked")
		user, ok := m.Owner(id)
		require.True(t, ok, "a detached lease is not ended as leaked")
		assert.Equal(t, "alice", user)
		// Only the ID exactly as issued finds the lease.
		for _, other := range []string{strings.ToUpper(id), id[:len(id)-1], id + "0", " " + id, ""} {
			_, ok := m.Owner(other)
			assert.False(t, ok, "Owner(%q)", other)
			assert.False(t, m.Release(other), "Release(%q)", other)
		}
		assert.True(t, m.Release(id))
		assert.False(t, m.Release(id), "already ended")
		_, ok = m.Owner(id)
		assert.False(t, ok)
		synctest.Wait()
		assert.Equal(t, keystest.StatusDeleted, state(t, srv, keyID).Status)
		require.NoError(t, m.Close(context.Background()))
		assert.Zero(t, leaks)
		assert.False(t, m.Release("unknown"))
	})
}

func TestSweepBoundsEachDelete(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		m := newManager(t, srv.Client(), lease.WithTTL(time.Second))
		loseCreates(t, srv, m, 3)
		time.Sleep(time.Minute)
		srv.Hang(keystest.OpDelete, 1)
		start := time.Now()
		res, err := lease.Sweep(context.Background(), srv.Client(), lease.SweepOptions{Concurrency: 1, DeleteTimeout: 5 * time.Second})
		require.Error(t, err, "the hung delete is reported")
		assert.Equal(t, 5*time.Second, time.Since(start), "only the hung delete waited, for its timeout")
		assert.Equal(t, 2, res.Deleted)
		require.Len(t, res.Failed, 1)
		assert.ErrorIs(t, res.Failed[0].Err, context.DeadlineExceeded)
		res, err = lease.Sweep(context.Background(), srv.Client(), lease.SweepOptions{})
		require.NoError(t, err)
		assert.Equal(t, 1, res.Deleted, "the next Sweep takes what was left")
	})
}

// Every refusal of a user ID matches ErrInvalidUser, whichever call made it.
func TestInvalidUserIsOneError(t *testing.T) {
	m := newManager(t, fake(t).Client())
	for _, u := range []string{"", strings.Repeat("u", lease.MaxUserLen+1), "a\xffb"} {
		_, err := m.Acquire(context.Background(), u)
		assert.ErrorIs(t, err, lease.ErrInvalidUser, "%q", u)
		_, err = lease.UserTag(u)
		assert.ErrorIs(t, err, lease.ErrInvalidUser, "%q", u)
	}
	l, err := m.Acquire(context.Background(), "fine")
	require.NoError(t, err)
	l.Release()
}
