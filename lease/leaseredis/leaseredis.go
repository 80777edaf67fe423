// Package leaseredis keeps a lease.Manager's per-user rate limit and lease
// caps in Redis, so that they hold across every replica of a backend
// instead of per process:
//
//	rdb := redis.NewClient(&redis.Options{Addr: "redis:6379", ContextTimeoutEnabled: true, MaxRetries: -1}) // or Sentinel, Cluster
//	limiter := leaseredis.New(rdb, leaseredis.WithPrefix("myapp"))
//	leases, err := lease.New(client, lease.WithLimiter(limiter), lease.WithRateLimit(time.Minute, 10), lease.WithMaxLeases(1000, 3))
//
// The limits stay policy set on each Manager; Managers that share a prefix
// share their state. Each Acquire is decided in one round trip: a
// transaction (MULTI/EXEC) that runs the caps script of this package and
// then the GCRA rate limit of github.com/go-redis/redis_rate/v10.
//
// # What is kept, and where
//
// Every key lives under the hash tag {prefix}, so that a Redis Cluster keeps
// them on one shard and one transaction can touch them all:
//
//	{prefix}:slots               sorted set: one member per lease of any user (the total cap)
//	{prefix}:user:<user>:slots   sorted set: the user's leases (the per-user cap)
//	{prefix}:user:<user>:usage   hash: acquired, denied, released (see Usage)
//	rate:{prefix}:rate:<user>    redis_rate's GCRA state
//
// A lease holds its slot from admission until it ends, or until the
// latest its credential can stop working on Deepgram's side (the
// Admission's Hold), whichever is first: the score of each member is that
// deadline, by Redis's clock, and every admission first drops the members
// past it. So a replica that is killed frees its slots by then, and no slot
// is ever lost for good.
//
// # Differences from the in-process limiter
//
//   - Releases are sent to Redis asynchronously (Lease.Release never waits
//     on the network); until one arrives, the slot still counts. A release
//     that cannot be sent is reported through the Manager's OnError (Op
//     "limit") and the slot frees itself at its deadline.
//   - An Acquire refused by a cap still takes a rate token: rate and caps
//     are decided together in one round trip.
//   - Usage counts what the shared limits decided: a refusal by Deepgram
//     (429) counts as a failed create (acquired is not incremented), not as
//     denied; Manager.Usage, per process, counts it as denied.
//
// # When Redis is unreachable
//
// By default Acquire then fails with an error that says the limiter is
// unavailable, and no credential is created: nothing is minted without
// admission. With WithFailOpen, the Acquire is decided by an in-process
// limiter (lease.NewLocalLimiter) instead, with the same limits, per
// process. Either way the Manager's OnError fires (Op "limit"), and the
// next Acquire tries Redis again: nothing needs restarting when Redis is
// back. Redis itself is expected to run without persistence: if it
// restarts empty, the limits start over.
package leaseredis

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/dglease/dglease/lease"
)

// Defaults, each overridable by an option.
const (
	// DefaultPrefix namespaces the keys of Managers that set no prefix.
	DefaultPrefix = "dglease"
	// DefaultTimeout bounds each round trip to Redis.
	DefaultTimeout = 2 * time.Second
	// DefaultUsageRetention is how long a user's usage counters are kept
	// after their last change.
	DefaultUsageRetention = 30 * 24 * time.Hour
)

//go:embed admit.lua
var admitScript string

//go:embed release.lua
var releaseScript string

//go:embed usage.lua
var usageScript string

// The scripts as go-redis runs them: by hash (EVALSHA), sending the source
// only when Redis does not know it yet, instead of on every call. The
// admission's caps script inside the rate limit's transaction is the
// exception (see joined).
var (
	admitLua   = redis.NewScript(admitScript)
	releaseLua = redis.NewScript(releaseScript)
	usageLua   = redis.NewScript(usageScript)
)

// Limiter is a lease.Limiter whose state lives in Redis. It is safe for
// concurrent use, by any number of Managers. Its goroutine (sending
// releases, up to 128 per round trip) exists only while releases are
// queued; Manager.Close waits for them (Flush), as long as its context
// allows.
type Limiter struct {
	rdb       redis.UniversalClient
	prefix    string
	failOpen  bool
	fallback  lease.Limiter
	timeout   time.Duration
	retention time.Duration
	err       error // a bad client or option, returned by every call

	mu      sync.Mutex
	queue   []release
	sending bool
	idle    chan struct{} // closed when the queue empties; nil when idle
}

// release is a slot to free in Redis.
type release struct {
	user, leaseID string
	mode          string // "issued", "failed" or "denied"
	report        func(error)
}

// Option configures a Limiter built by New. Options are sealed: only this
// package defines them.
type Option interface{ apply(*Limiter) error }

type optionFunc func(*Limiter) error

func (f optionFunc) apply(l *Limiter) error { return f(l) }

// WithPrefix sets the key namespace: Managers whose limiters share a
// prefix (on one Redis) share their limits. Default [DefaultPrefix]. It
// must be non-empty and hold no '{', '}' or white space (it becomes a
// Redis Cluster hash tag).
func WithPrefix(prefix string) Option {
	return optionFunc(func(l *Limiter) error {
		if prefix == "" || strings.ContainsAny(prefix, "{} \t\r\n") {
			return fmt.Errorf("leaseredis: prefix %q must be non-empty, without braces or white space", prefix)
		}
		l.prefix = prefix
		return nil
	})
}

// WithFailOpen makes an Acquire that Redis cannot decide (unreachable,
// timed out) be decided by an in-process limiter instead, with the same
// limits per process, rather than refused. Default: refused (fail closed):
// no credential is created without admission by the shared limits.
func WithFailOpen() Option {
	return optionFunc(func(l *Limiter) error {
		l.failOpen = true
		return nil
	})
}

// WithTimeout bounds each round trip to Redis (the Acquire's context may
// end it sooner). Default [DefaultTimeout].
func WithTimeout(d time.Duration) Option {
	return optionFunc(func(l *Limiter) error {
		if d <= 0 {
			return fmt.Errorf("leaseredis: timeout %s must be positive", d)
		}
		l.timeout = d
		return nil
	})
}

// WithUsageRetention sets how long a user's usage counters are kept after
// their last change. Default [DefaultUsageRetention] (30 days).
func WithUsageRetention(d time.Duration) Option {
	return optionFunc(func(l *Limiter) error {
		if d < time.Second {
			return fmt.Errorf("leaseredis: usage retention %s is shorter than 1s", d)
		}
		l.retention = d
		return nil
	})
}

// New returns a Limiter that keeps its state in rdb (go-redis v9: a single
// node, Sentinel or Cluster client). It makes no network call. A nil
// client or a bad option is reported by every later call (Admit fails, so
// Acquire fails before creating anything), since New returns no error.
//
// Configure rdb with ContextTimeoutEnabled: true, or go-redis ignores the
// round trip's deadline (WithTimeout, the Acquire's context) on the socket
// and a Redis that stopped answering holds Acquire for its ReadTimeout and
// retries; and with MaxRetries: -1, since a transaction that timed out may
// have run, and sending it again spends a second rate token:
//
//	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1})
func New(rdb redis.UniversalClient, opts ...Option) *Limiter {
	l := &Limiter{rdb: rdb, prefix: DefaultPrefix, timeout: DefaultTimeout, retention: DefaultUsageRetention, fallback: lease.NewLocalLimiter()}
	if rdb == nil {
		l.err = errors.New("leaseredis: New needs a Redis client")
	}
	for _, o := range opts {
		if o == nil {
			l.err = errors.Join(l.err, errors.New("leaseredis: nil Option"))
			continue
		}
		if err := o.apply(l); err != nil {
			l.err = errors.Join(l.err, err)
		}
	}
	return l
}

// keys are the Redis keys of one user.
type keys struct{ slots, userSlots, usage, rate string }

func (l *Limiter) keys(user string) keys {
	tag := "{" + l.prefix + "}:"
	return keys{
		slots:     tag + "slots",
		userSlots: tag + "user:" + user + ":slots",
		usage:     tag + "user:" + user + ":usage",
		rate:      tag + "rate:" + user, // redis_rate adds "rate:" in front
	}
}

// Admit implements lease.Limiter.
func (l *Limiter) Admit(ctx context.Context, a lease.Admission) (func(bool), error) {
	if l.err != nil {
		return nil, l.err
	}
	rctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	k := l.keys(a.User)
	lim := a.Limits
	capsKeys := []string{k.slots, k.userSlots, k.usage}
	capsArgs := func(again bool) []any {
		return []any{a.LeaseID, a.Hold.Milliseconds(), lim.MaxLeases, lim.MaxPerUser, lim.TTL.Milliseconds(), int64(l.retention.Seconds()), again}
	}
	var caps *redis.Cmd
	var rate *redis_rate.Result
	var err error
	if lim.Every > 0 {
		// One transaction: the caps script, then redis_rate's GCRA script.
		j := &joined{rdb: l.rdb, caps: func(p redis.Pipeliner, again bool) *redis.Cmd {
			return p.Eval(rctx, admitScript, capsKeys, capsArgs(again)...)
		}}
		rate, err = redis_rate.NewLimiter(j).Allow(rctx, k.rate, redis_rate.Limit{Rate: 1, Burst: lim.Burst, Period: lim.Every})
		caps = j.capsCmd
	} else {
		caps = admitLua.Run(rctx, l.rdb, capsKeys, capsArgs(false)...)
	}
	if caps == nil {
		return l.unavailable(ctx, a, err)
	}
	res, cerr := caps.Int64Slice()
	if cerr != nil || len(res) != 3 {
		// The transaction may have run with its answer lost (a timeout):
		// give back the slot it may hold, rather than leave it held until
		// its deadline. Freeing a slot that is not held changes nothing.
		l.enqueue(release{user: a.User, leaseID: a.LeaseID, mode: "failed", report: a.Report})
		return l.unavailable(ctx, a, errors.Join(cerr, err))
	}
	if res[0] == 0 { // a cap refused (the rate token, if any, is spent)
		limit := lease.LimitTotalCap
		if res[1] == 2 {
			limit = lease.LimitUserCap
		}
		return nil, &lease.DeniedError{User: a.User, Limit: limit, RetryAfter: max(time.Duration(res[2])*time.Millisecond, time.Millisecond)}
	}
	if err != nil {
		// The caps admitted, the rate limit could not decide: give the
		// slot back (it also frees itself at its deadline).
		l.enqueue(release{user: a.User, leaseID: a.LeaseID, mode: "failed", report: a.Report})
		return l.unavailable(ctx, a, err)
	}
	if rate != nil && rate.Allowed == 0 {
		// Now, not queued: the caller's next Acquire must find the slot
		// free and be told about the rate, not a cap.
		l.send([]release{{user: a.User, leaseID: a.LeaseID, mode: "denied", report: a.Report}})
		return nil, &lease.DeniedError{User: a.User, Limit: lease.LimitRate, RetryAfter: max(rate.RetryAfter, time.Millisecond)}
	}
	var once sync.Once
	return func(issued bool) {
		once.Do(func() {
			mode := "failed"
			if issued {
				mode = "issued"
			}
			l.enqueue(release{user: a.User, leaseID: a.LeaseID, mode: mode, report: a.Report})
		})
	}, nil
}

// unavailable decides an Acquire Redis could not: refused, or with
// WithFailOpen, by the in-process limiter.
func (l *Limiter) unavailable(ctx context.Context, a lease.Admission, cause error) (func(bool), error) {
	if cause == nil {
		cause = errors.New("no answer")
	}
	err := fmt.Errorf("leaseredis: Redis could not decide: %w", cause)
	if !l.failOpen {
		return nil, err
	}
	release, ferr := l.fallback.Admit(ctx, a)
	if ferr != nil {
		if a.Report != nil {
			a.Report(err)
		}
		return nil, ferr
	}
	return release, fmt.Errorf("%w; admitted by the in-process limiter (WithFailOpen)", err)
}

// enqueue queues a release for the sending goroutine, starting it if idle.
func (l *Limiter) enqueue(r release) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.queue = append(l.queue, r)
	if !l.sending {
		l.sending = true
		l.idle = make(chan struct{})
		go l.sendQueued()
	}
}

// maxBatch bounds the releases sent in one pipeline.
const maxBatch = 128

// sendQueued sends queued releases, in batches of up to maxBatch per round
// trip (a pipeline), until none is left.
func (l *Limiter) sendQueued() {
	for {
		l.mu.Lock()
		if len(l.queue) == 0 {
			l.sending = false
			close(l.idle)
			l.idle = nil
			l.mu.Unlock()
			return
		}
		n := min(len(l.queue), maxBatch)
		batch := append([]release(nil), l.queue[:n]...)
		clear(l.queue[:n])
		l.queue = l.queue[n:]
		l.mu.Unlock()
		l.send(batch)
	}
}

// send sends releases in one pipeline (one round trip), by the script's
// hash; those Redis answers NOSCRIPT (it had not seen the script, so they
// did not run) are sent once more with the source.
func (l *Limiter) send(batch []release) {
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	cmds := l.sendOnce(ctx, batch, func(p redis.Pipeliner, keys []string, args ...any) *redis.Cmd {
		return releaseLua.EvalSha(ctx, p, keys, args...)
	})
	var again []int
	for i, c := range cmds {
		if redis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
			again = append(again, i)
		}
	}
	if len(again) > 0 {
		retry := make([]release, len(again))
		for j, i := range again {
			retry[j] = batch[i]
		}
		for j, c := range l.sendOnce(ctx, retry, func(p redis.Pipeliner, keys []string, args ...any) *redis.Cmd {
			return releaseLua.Eval(ctx, p, keys, args...)
		}) {
			cmds[again[j]] = c
		}
	}
	for i, r := range batch {
		if err := cmds[i].Err(); err != nil && r.report != nil {
			r.report(fmt.Errorf("leaseredis: could not free the slot of lease %s in Redis (it frees itself at its deadline): %w", r.leaseID, err))
		}
	}
}

// sendOnce runs the release script for each of batch in one pipeline.
func (l *Limiter) sendOnce(ctx context.Context, batch []release, run func(p redis.Pipeliner, keys []string, args ...any) *redis.Cmd) []*redis.Cmd {
	pipe := l.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(batch))
	for i, r := range batch {
		k := l.keys(r.user)
		cmds[i] = run(pipe, []string{k.slots, k.userSlots, k.usage}, r.leaseID, r.mode, int64(l.retention.Seconds()))
	}
	_, _ = pipe.Exec(ctx) // each command carries its own error
	return cmds
}

// Flush waits until every release queued so far has been sent to Redis
// (or failed), or until ctx ends. Safe for concurrent use.
func (l *Limiter) Flush(ctx context.Context) error {
	l.mu.Lock()
	idle := l.idle
	l.mu.Unlock()
	if idle == nil {
		return nil
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("leaseredis: flush: %w", ctx.Err())
	}
}

// Usage returns user's counters as the shared limits saw them, from any
// replica: Acquired (admitted and not failed), Denied (refused by the
// shared rate limit or caps), Released (issued leases that ended) and Live
// (slots held now). Leaked is not kept in Redis (it is 0); see
// Manager.Usage for the per-process view. Counters expire after the usage
// retention without a change.
func (l *Limiter) Usage(ctx context.Context, user string) (lease.Usage, error) {
	if l.err != nil {
		return lease.Usage{}, l.err
	}
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	k := l.keys(user)
	res, err := usageLua.Run(ctx, l.rdb, []string{k.userSlots, k.usage}).Int64Slice()
	if err != nil || len(res) != 4 {
		return lease.Usage{}, fmt.Errorf("leaseredis: usage of user %q: %w", user, errors.Join(err, errors.New("no answer")))
	}
	return lease.Usage{Acquired: uint64(max(res[0], 0)), Denied: uint64(max(res[1], 0)), Released: uint64(max(res[2], 0)), Live: int(res[3])}, nil
}

// joined is the client redis_rate talks to: it sends redis_rate's GCRA
// script in one transaction (MULTI/EXEC, one round trip) after the caps
// script, and keeps the caps script's answer. redis_rate calls EvalSha,
// and Eval when Redis does not know the script yet (the caps script, whose
// slot is already held then, sees it and admits again without counting
// twice).
type joined struct {
	rdb     redis.UniversalClient
	caps    func(p redis.Pipeliner, again bool) *redis.Cmd
	capsCmd *redis.Cmd
	runs    int
}

func (j *joined) run(ctx context.Context, gcra func(redis.Pipeliner) *redis.Cmd) *redis.Cmd {
	pipe := j.rdb.TxPipeline()
	// The second run of one admission (redis_rate resending its script's
	// source) must not count a refusal by the caps twice.
	j.capsCmd = j.caps(pipe, j.runs > 0)
	j.runs++
	cmd := gcra(pipe)
	_, _ = pipe.Exec(ctx) // each command carries its own error
	return cmd
}

func (j *joined) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return j.run(ctx, func(p redis.Pipeliner) *redis.Cmd { return p.EvalSha(ctx, sha1, keys, args...) })
}

func (j *joined) Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return j.run(ctx, func(p redis.Pipeliner) *redis.Cmd { return p.Eval(ctx, script, keys, args...) })
}

func (j *joined) EvalShaRO(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return j.rdb.EvalShaRO(ctx, sha1, keys, args...)
}

func (j *joined) EvalRO(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return j.rdb.EvalRO(ctx, script, keys, args...)
}

func (j *joined) ScriptExists(ctx context.Context, hashes ...string) *redis.BoolSliceCmd {
	return j.rdb.ScriptExists(ctx, hashes...)
}

func (j *joined) ScriptLoad(ctx context.Context, script string) *redis.StringCmd {
	return j.rdb.ScriptLoad(ctx, script)
}

func (j *joined) Del(ctx context.Context, keys ...string) *redis.IntCmd {
	return j.rdb.Del(ctx, keys...)
}
