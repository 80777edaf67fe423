package leaseredis_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dglease/dglease/internal/testenv"
	"github.com/dglease/dglease/keys/keystest"
	"github.com/dglease/dglease/lease"
	"github.com/dglease/dglease/lease/leaseredis"
)

func TestMain(m *testing.M) {
	testenv.ClearDeepgramProcess()
	redis.SetLogger(quiet{}) // go-redis logs failed dials while Redis is down on purpose
	goleak.VerifyTestMain(m)
}

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

// fleet is several Managers (replicas) on one fake Deepgram, each with its
// own Redis client and limiter on one Redis.
type fleet struct {
	t        *testing.T
	srv      *keystest.Server
	managers []*lease.Manager
	limiters []*leaseredis.Limiter
	errs     atomic.Int64 // OnError events with Op "limit"
	final    atomic.Int64 // of which Final
}

func newFleet(t *testing.T, addr string, n int, ropts []leaseredis.Option, opts ...lease.Option) *fleet {
	t.Helper()
	f := &fleet{t: t, srv: keystest.NewServer(t, keystest.WithoutListener())}
	hooks := lease.Hooks{OnError: func(e lease.Event) {
		if e.Op == "limit" {
			f.errs.Add(1)
			if e.Final {
				f.final.Add(1)
			}
		}
	}}
	for range n {
		rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, ContextTimeoutEnabled: true})
		l := leaseredis.New(rdb, ropts...)
		m, err := lease.New(f.srv.Client(), append([]lease.Option{lease.WithLimiter(l), lease.WithHooks(hooks)}, opts...)...)
		require.NoError(t, err)
		f.managers = append(f.managers, m)
		f.limiters = append(f.limiters, l)
		t.Cleanup(func() {
			_ = m.Close(context.Background())
			_ = l.Flush(context.Background())
			_ = rdb.Close()
		})
	}
	return f
}

// flush waits for every Manager's deletions and every limiter's releases.
func (f *fleet) flush() {
	f.t.Helper()
	for i, m := range f.managers {
		require.NoError(f.t, m.Flush(context.Background()))
		require.NoError(f.t, f.limiters[i].Flush(context.Background()))
	}
}

func denied(t *testing.T, err error) *lease.DeniedError {
	t.Helper()
	var d *lease.DeniedError
	require.ErrorAs(t, err, &d)
	require.ErrorIs(t, err, lease.ErrDenied)
	return d
}

// The rate limit holds across replicas: a user gets burst Acquires from
// all of them together, not burst from each; the refusal says when to
// retry, and another user is not affected.
func TestRateLimitIsShared(t *testing.T) {
	mr := miniredis.RunT(t)
	mr.SetTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) // Redis's TIME stands still: exact answers
	f := newFleet(t, mr.Addr(), 3, nil, lease.WithRateLimit(time.Minute, 2))
	for i := range 2 {
		l, err := f.managers[i].Acquire(context.Background(), "alice")
		require.NoError(t, err)
		l.Release()
	}
	_, err := f.managers[2].Acquire(context.Background(), "alice")
	d := denied(t, err)
	assert.Equal(t, lease.LimitRate, d.Limit)
	assert.Equal(t, time.Minute, d.RetryAfter, "the next token, a minute after the two spent")
	_, err = f.managers[2].Acquire(context.Background(), "bob")
	require.NoError(t, err, "another user has a bucket of their own")
	f.flush()
	u, err := f.limiters[0].Usage(context.Background(), "alice")
	require.NoError(t, err)
	assert.Equal(t, lease.Usage{Acquired: 2, Released: 2, Denied: 1}, u, "alice's usage, read from any replica")
}

// The caps hold across replicas and count live leases: the per-user cap of
// 2 admits two leases from different replicas, refuses the third with a
// RetryAfter, and admits again once one is released.
func TestCapsAreShared(t *testing.T) {
	mr := miniredis.RunT(t)
	f := newFleet(t, mr.Addr(), 2, nil, lease.WithRateLimit(0, 1), lease.WithMaxLeases(3, 2), lease.WithTTL(10*time.Second))
	// Every lease is kept: a dropped one would be found by leak detection
	// and released, freeing its slot.
	a1, err := f.managers[0].Acquire(context.Background(), "alice")
	require.NoError(t, err)
	a2, err := f.managers[1].Acquire(context.Background(), "alice")
	require.NoError(t, err)
	defer a2.Release()
	_, err = f.managers[1].Acquire(context.Background(), "alice")
	d := denied(t, err)
	assert.Equal(t, lease.LimitUserCap, d.Limit)
	assert.Equal(t, 10*time.Second, d.RetryAfter, "the TTL: the longest a live lease can block")
	b1, err := f.managers[0].Acquire(context.Background(), "bob")
	require.NoError(t, err)
	defer b1.Release()
	_, err = f.managers[0].Acquire(context.Background(), "carol")
	assert.Equal(t, lease.LimitTotalCap, denied(t, err).Limit)

	a1.Release()
	f.flush()
	a3, err := f.managers[1].Acquire(context.Background(), "alice")
	require.NoError(t, err, "the released slot is free on every replica")
	defer a3.Release()
	u, err := f.limiters[1].Usage(context.Background(), "alice")
	require.NoError(t, err)
	assert.Equal(t, 2, u.Live)
}

// A replica killed with leases live never releases their slots: they free
// themselves at their deadline (the create timeout plus the key's life),
// by Redis's clock, so no user stays locked out.
func TestSlotsOfAKilledReplicaFreeThemselves(t *testing.T) {
	mr := miniredis.RunT(t)
	start := time.Now()
	mr.SetTime(start)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	killed := leaseredis.New(rdb)
	lim := lease.Limits{Every: 0, Burst: 1, MaxLeases: 100, MaxPerUser: 2, TTL: 10 * time.Second}
	for i := range 2 { // the replica admits two leases, then dies: no release ever comes
		release, err := killed.Admit(context.Background(), lease.Admission{User: "alice", LeaseID: fmt.Sprint("lease-", i), Limits: lim, Hold: 45 * time.Second})
		require.NoError(t, err)
		require.NotNil(t, release)
	}
	f := newFleet(t, mr.Addr(), 1, nil, lease.WithRateLimit(0, 1), lease.WithMaxLeases(100, 2))
	_, err := f.managers[0].Acquire(context.Background(), "alice")
	assert.Equal(t, lease.LimitUserCap, denied(t, err).Limit, "the dead replica's slots still count")
	mr.SetTime(start.Add(45*time.Second + time.Millisecond))
	mr.FastForward(45*time.Second + time.Millisecond)
	l, err := f.managers[0].Acquire(context.Background(), "alice")
	require.NoError(t, err, "freed at their deadline")
	l.Release()
}

// Redis unreachable, by default: Acquire fails saying the limiter is
// unavailable, no key is created, OnError fires; when Redis is back, the
// next Acquire works, with no restart.
func TestFailClosed(t *testing.T) {
	mr := miniredis.RunT(t)
	f := newFleet(t, mr.Addr(), 1, []leaseredis.Option{leaseredis.WithTimeout(200 * time.Millisecond)}, lease.WithRateLimit(time.Second, 5))
	m := f.managers[0]
	mr.Close()
	_, err := m.Acquire(context.Background(), "alice")
	require.Error(t, err)
	assert.ErrorContains(t, err, "the limiter is unavailable, so no credential was created")
	assert.NotErrorIs(t, err, lease.ErrDenied)
	assert.Len(t, f.srv.Keys(), 1, "no key created (only the admin key)")
	assert.Equal(t, int64(1), f.final.Load(), "OnError, final")
	require.NoError(t, mr.Restart())
	l, err := m.Acquire(context.Background(), "alice")
	require.NoError(t, err, "back without a restart of the Manager")
	l.Release()
	f.flush()
	assert.Zero(t, m.Stats().Live)
}

// Redis unreachable, with WithFailOpen: Acquire is decided by the
// in-process limiter, with the same limits; OnError fires for each.
func TestFailOpen(t *testing.T) {
	mr := miniredis.RunT(t)
	f := newFleet(t, mr.Addr(), 1, []leaseredis.Option{leaseredis.WithFailOpen(), leaseredis.WithTimeout(200 * time.Millisecond)}, lease.WithRateLimit(time.Minute, 2))
	m := f.managers[0]
	mr.Close()
	for range 2 {
		l, err := m.Acquire(context.Background(), "alice")
		require.NoError(t, err, "admitted by the in-process limiter")
		l.Release()
	}
	_, err := m.Acquire(context.Background(), "alice")
	assert.Equal(t, lease.LimitRate, denied(t, err).Limit, "the same limits, in process")
	// OnError for each Acquire Redis could not decide (3), and, once sent,
	// for each slot release it could not take (3: each frees itself at its
	// deadline).
	f.flush()
	assert.Equal(t, int64(6), f.errs.Load())
	assert.Zero(t, f.final.Load(), "none failed")
	require.NoError(t, mr.Restart())
	before := f.errs.Load()
	l, err := m.Acquire(context.Background(), "bob")
	require.NoError(t, err)
	l.Release()
	f.flush()
	assert.Equal(t, before, f.errs.Load(), "no error once Redis is back")
	u, err := f.limiters[0].Usage(context.Background(), "bob")
	require.NoError(t, err)
	assert.Equal(t, lease.Usage{Acquired: 1, Released: 1}, u, "decided by Redis again")
}

// With a rate limit, the caps script shares a transaction with
// redis_rate's GCRA script; when Redis has forgotten that one, redis_rate
// sends the transaction again, caps included. A refusal by a cap is then
// counted once, not once per run.
func TestCapRefusalAfterScriptFlushCountsOnce(t *testing.T) {
	mr := miniredis.RunT(t)
	f := newFleet(t, mr.Addr(), 1, nil, lease.WithRateLimit(time.Minute, 10), lease.WithMaxLeases(10, 1))
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	held, err := f.managers[0].Acquire(context.Background(), "alice")
	require.NoError(t, err)
	defer held.Release()
	require.NoError(t, rdb.ScriptFlush(context.Background()).Err())
	_, err = f.managers[0].Acquire(context.Background(), "alice")
	assert.Equal(t, lease.LimitUserCap, denied(t, err).Limit)
	u, err := f.limiters[0].Usage(context.Background(), "alice")
	require.NoError(t, err)
	assert.Equal(t, uint64(1), u.Denied, "one refusal, counted once")
}

// An admission whose answer is lost (Redis ran it, but the answer came
// after the round trip's timeout) does not leave its slot held until the
// deadline: the limiter gives it back, so the user is not locked out.
func TestLostAnswerGivesTheSlotBack(t *testing.T) {
	mr := miniredis.RunT(t)
	lim := lease.Limits{Burst: 1, MaxLeases: 10, MaxPerUser: 1, TTL: time.Second}
	a := lease.Admission{User: "alice", LeaseID: "lost", Limits: lim, Hold: time.Hour}
	direct := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer direct.Close()
	l := leaseredis.New(direct)

	late := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer late.Close()
	lose := &loseFirstAnswer{}
	late.AddHook(lose)
	lateLim := leaseredis.New(late)
	release, err := lateLim.Admit(context.Background(), a)
	require.Error(t, err)
	assert.Nil(t, release)
	require.True(t, lose.lost.Load(), "the admission ran on Redis")
	require.NoError(t, lateLim.Flush(context.Background())) // the give-back, queued by Admit, reaches Redis

	u, err := l.Usage(context.Background(), "alice")
	require.NoError(t, err)
	assert.Zero(t, u.Live, "the slot was given back")
	a.LeaseID = "next"
	release, err = l.Admit(context.Background(), a)
	require.NoError(t, err, "the slot of the lost answer was given back")
	release(false)
	require.NoError(t, l.Flush(context.Background()))
}

// loseFirstAnswer is a go-redis hook: the first script that runs on Redis
// without error has its answer lost, the client seeing a timeout instead,
// as when Redis answers after the round trip's deadline.
type loseFirstAnswer struct{ lost atomic.Bool }

func (h *loseFirstAnswer) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *loseFirstAnswer) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if name := cmd.Name(); err == nil && (name == "evalsha" || name == "eval") && h.lost.CompareAndSwap(false, true) {
			cmd.SetErr(context.DeadlineExceeded)
			return context.DeadlineExceeded
		}
		return err
	}
}

func (h *loseFirstAnswer) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// Bad input is reported by every call, since New returns no error.
func TestBadInput(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	a := lease.Admission{User: "u", LeaseID: "l", Limits: lease.Limits{Burst: 1, MaxLeases: 1, MaxPerUser: 1}, Hold: time.Second}
	for _, tt := range []struct {
		name string
		l    *leaseredis.Limiter
		want string
	}{
		{"nil client", leaseredis.New(nil), "New needs a Redis client"},
		{"empty prefix", leaseredis.New(rdb, leaseredis.WithPrefix("")), "prefix"},
		{"prefix with a brace", leaseredis.New(rdb, leaseredis.WithPrefix("a}b")), "without braces"},
		{"zero timeout", leaseredis.New(rdb, leaseredis.WithTimeout(0)), "timeout"},
		{"short retention", leaseredis.New(rdb, leaseredis.WithUsageRetention(time.Millisecond)), "retention"},
		{"nil option", leaseredis.New(rdb, nil), "nil Option"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			release, err := tt.l.Admit(context.Background(), a)
			assert.Nil(t, release)
			assert.ErrorContains(t, err, tt.want)
			assert.ErrorContains(t, err, "leaseredis: ")
			_, err = tt.l.Usage(context.Background(), "u")
			assert.ErrorContains(t, err, tt.want)
		})
	}
	_, err := lease.New(keystest.NewServer(t, keystest.WithoutListener()).Client(), lease.WithLimiter(nil))
	assert.ErrorContains(t, err, "WithLimiter needs a Limiter")
}

// Prefixes separate limits; user IDs of any shape map to distinct keys.
func TestPrefixesAndUserNames(t *testing.T) {
	mr := miniredis.RunT(t)
	a := newFleet(t, mr.Addr(), 1, []leaseredis.Option{leaseredis.WithPrefix("a")}, lease.WithRateLimit(time.Minute, 1))
	b := newFleet(t, mr.Addr(), 1, []leaseredis.Option{leaseredis.WithPrefix("b")}, lease.WithRateLimit(time.Minute, 1))
	_, err := a.managers[0].Acquire(context.Background(), "alice")
	require.NoError(t, err)
	_, err = b.managers[0].Acquire(context.Background(), "alice")
	require.NoError(t, err, "another prefix, other limits")
	for _, user := range []string{"x:slots", "x", "{b}", "ü ü", "a\x00b"} {
		_, err := a.managers[0].Acquire(context.Background(), user)
		require.NoError(t, err, "user %q has a bucket of their own", user)
	}
}

// The limiter is safe for concurrent use from many goroutines and
// Managers, and counts exactly: 4 replicas, 50 goroutines each, one user,
// burst 10 a minute: exactly 10 admitted.
func TestConcurrentAdmissions(t *testing.T) {
	mr := miniredis.RunT(t)
	f := newFleet(t, mr.Addr(), 4, nil, lease.WithRateLimit(time.Minute, 10), lease.WithMaxLeases(1000, 1000))
	kept, refused := f.hammer("alice", 50)
	for _, l := range kept {
		l.Release()
	}
	assert.Len(t, kept, 10)
	assert.Equal(t, map[lease.Limit]int{lease.LimitRate: 190}, refused)
}

// hammer has perManager goroutines on each Manager try one Acquire for
// user at the same time; it returns the leases admitted (kept live) and
// the refusals by limit. Any other error fails the test.
func (f *fleet) hammer(user string, perManager int) (kept []*lease.Lease, refused map[lease.Limit]int) {
	var mu sync.Mutex
	refused = map[lease.Limit]int{}
	var wg sync.WaitGroup
	for _, m := range f.managers {
		for range perManager {
			wg.Go(func() {
				l, err := m.Acquire(context.Background(), user)
				mu.Lock()
				defer mu.Unlock()
				var d *lease.DeniedError
				switch {
				case err == nil:
					kept = append(kept, l)
				case errors.As(err, &d):
					refused[d.Limit]++
				default:
					f.t.Errorf("Acquire: %v", err)
				}
			})
		}
	}
	wg.Wait()
	return kept, refused
}

// Manager.Close sends the releases the limiter queued before it returns,
// so a process that exits after Close leaves no slot held.
func TestCloseSendsQueuedReleases(t *testing.T) {
	mr := miniredis.RunT(t)
	f := newFleet(t, mr.Addr(), 1, nil, lease.WithRateLimit(0, 1))
	for range 20 {
		l, err := f.managers[0].Acquire(context.Background(), "alice")
		require.NoError(t, err)
		l.Release()
	}
	require.NoError(t, f.managers[0].Close(context.Background()))
	u, err := f.limiters[0].Usage(context.Background(), "alice") // no Flush of our own
	require.NoError(t, err)
	assert.Equal(t, lease.Usage{Acquired: 20, Released: 20}, u)
}

// The scripts run by hash; when Redis has forgotten them (SCRIPT FLUSH, or
// a restart without persistence) each call still runs once, with the
// source: admissions without a rate limit, releases (which free the slot)
// and Usage.
func TestScriptsForgottenByRedisStillRunOnce(t *testing.T) {
	mr := miniredis.RunT(t)
	f := newFleet(t, mr.Addr(), 1, nil, lease.WithRateLimit(0, 1), lease.WithMaxLeases(10, 1))
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	for round := range 3 {
		require.NoError(t, rdb.ScriptFlush(context.Background()).Err())
		l, err := f.managers[0].Acquire(context.Background(), "alice")
		require.NoError(t, err, "round %d", round)
		require.NoError(t, rdb.ScriptFlush(context.Background()).Err())
		l.Release()
		f.flush()
		require.NoError(t, rdb.ScriptFlush(context.Background()).Err())
		u, err := f.limiters[0].Usage(context.Background(), "alice")
		require.NoError(t, err)
		assert.Equal(t, lease.Usage{Acquired: uint64(round + 1), Released: uint64(round + 1)}, u, "each counted once; the slot is free again")
	}
}
