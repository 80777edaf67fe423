package lease

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter is where the state of the Manager's per-user rate limit and
// lease caps lives: in the process by default ([NewLocalLimiter]), or shared
// by every replica (lease/leaseredis). The limits themselves stay policy
// set on the Manager (WithRateLimit, WithMaxLeases) and come with each
// Admission. Implementations must be safe for concurrent use. A Limiter
// that also has a method Flush(context.Context) error (sending what it
// queued) is flushed by Manager.Close.
type Limiter interface {
	// Admit decides whether one Acquire may go ahead under a.Limits. On
	// admission it takes a rate token and holds a slot in the caps until
	// release is called (once, from any goroutine, never blocking: issued
	// says whether a lease was issued, for usage counters) or until a.Hold
	// has passed, whichever is first, so that a slot whose release never
	// comes (a replica killed) frees itself.
	//
	// A refusal is a *DeniedError. A limiter that could not decide returns
	// a nil release and an error: Acquire then fails, and creates nothing.
	// A limiter that could not decide but admitted all the same (a
	// fallback) returns a release and an error, which the Manager reports
	// through OnError and goes on.
	Admit(ctx context.Context, a Admission) (release func(issued bool), err error)
}

// Admission is one Acquire as a Limiter sees it.
type Admission struct {
	// User is who the credential is for.
	User string
	// LeaseID names the lease the slot is for, unique across replicas.
	LeaseID string
	// Limits are the Manager's limits.
	Limits Limits
	// Hold is the longest the slot may be held: until the credential, not
	// created yet, would stop working on Deepgram's side at the latest
	// (the create timeout plus the credential's lifetime there).
	Hold time.Duration
	// Report, when set, takes problems the limiter worked around without
	// failing the Acquire (a fallback, a release it could not record). It
	// may be called from any goroutine, also after Admit returns. The
	// Manager reports them through Hooks.OnError, with Op "limit".
	Report func(error)
}

// Limits are a Manager's limits, as WithRateLimit and WithMaxLeases set
// them.
type Limits struct {
	// Every and Burst are the per-user rate limit: one Acquire per Every
	// on average, Burst at once. Every == 0: no rate limit.
	Every time.Duration
	Burst int
	// MaxLeases caps the live leases (and Acquire calls in flight) of all
	// users, MaxPerUser those of each user.
	MaxLeases, MaxPerUser int
	// TTL is the lease TTL: the RetryAfter of a refusal by a cap, an upper
	// bound on when a blocking lease ends by itself.
	TTL time.Duration
}

// NewLocalLimiter returns the limiter a Manager uses unless WithLimiter says
// otherwise: its state (a token bucket per user, golang.org/x/time/rate,
// and the count of held slots) lives in this process. Several Managers may
// share one to share limits within a process; replicas need a shared store
// (lease/leaseredis). Its slots are freed by release alone: within one
// process a release is never lost.
func NewLocalLimiter() Limiter {
	return &localLimiter{users: map[string]*localUser{}}
}

type localLimiter struct {
	mu    sync.Mutex
	held  int // slots held, all users
	users map[string]*localUser
	idle  lru[localUser, *localUser] // users by last activity
}

// localUser is one user's rate limiter and held slots.
type localUser struct {
	l      *localLimiter // the limiter u belongs to
	name   string
	bucket *rate.Limiter
	// every and burst are what bucket was last set to.
	every time.Duration
	burst int
	held  int
	last  time.Time
	idle  links[localUser] // in localLimiter.idle
}

// userRetention is how long an idle user's state is kept.
const userRetention = time.Hour

func (l *localLimiter) Admit(_ context.Context, a Admission) (func(bool), error) {
	lim := a.Limits
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	u := l.users[a.User]
	if u == nil {
		// Forget a few users idle for userRetention with no slot held and
		// a full bucket: no state is lost that a fresh one would not have.
		l.idle.evict(func(o *localUser) bool { return now.Sub(o.last) > userRetention },
			func(o *localUser) bool { return o.held == 0 && o.bucket.TokensAt(now) >= float64(o.bucket.Burst()) },
			func(o *localUser) { delete(l.users, o.name) })
		u = &localUser{l: l, name: a.User, bucket: rate.NewLimiter(rate.Every(lim.Every), lim.Burst), every: lim.Every, burst: lim.Burst}
		l.users[a.User] = u
	}
	u.last = now
	l.idle.touch(u)
	switch {
	case l.held >= lim.MaxLeases:
		return nil, &DeniedError{User: a.User, Limit: LimitTotalCap, RetryAfter: lim.TTL}
	case u.held >= lim.MaxPerUser:
		return nil, &DeniedError{User: a.User, Limit: LimitUserCap, RetryAfter: lim.TTL}
	}
	// A Manager's limits are fixed, but Managers sharing this limiter may
	// differ: each Admission brings its own. Compared with what u was set
	// to, not read back from the bucket (each read takes its lock).
	if u.every != lim.Every || u.burst != lim.Burst {
		u.every, u.burst = lim.Every, lim.Burst
		u.bucket.SetLimitAt(now, rate.Every(lim.Every))
		u.bucket.SetBurstAt(now, lim.Burst)
	}
	res := u.bucket.ReserveN(now, 1)
	if delay := res.DelayFrom(now); delay > 0 { // always OK: burst >= 1
		res.CancelAt(now)
		return nil, &DeniedError{User: a.User, Limit: LimitRate, RetryAfter: delay}
	}
	l.held++
	u.held++
	// The Manager calls release once; a second call is ignored all the
	// same. The closure holds only u (which points to l) and its flag: a
	// live lease keeps it, so it is kept small.
	released := false
	return func(bool) {
		l := u.l
		l.mu.Lock()
		if !released {
			released = true
			l.held--
			u.held--
			u.last = time.Now()
			l.idle.touch(u)
		}
		l.mu.Unlock()
	}, nil
}

func (u *localUser) link() *links[localUser] { return &u.idle }
