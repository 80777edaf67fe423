package lease

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"
)

// Hooks are functions the Manager calls on lease events, e.g. to log,
// count or bill them. Any field may be nil. Pass them to [WithHooks], which
// also combines several Hooks values.
//
// Each hook runs synchronously, on the goroutine where its event happens
// and before the call that caused the event returns: OnAcquire and OnDenied
// inside Acquire; OnRelease and OnLeak inside Lease.Release,
// Manager.Release or Close, or on the timer or context goroutine that ended
// the lease; OnError inside Acquire (create failures), on a deleter
// goroutine (delete failures) or on the periodic sweep's goroutine. No
// event is queued, dropped or reordered: for one lease, OnAcquire returns
// before its OnRelease is called. A hook is never called with a lock of the
// Manager's held, so it may call the Manager, except Close and Flush, which
// may wait for the very goroutine the hook runs on. A hook delays the path
// it runs on (Release itself, for OnRelease): it must be quick and must not
// block. Hooks of different
// events may run at the same time on different goroutines, so a hook must
// be safe for concurrent use.
//
// A hook that panics is recovered; the panic is counted in
// [Stats].HookPanics and stops neither later hooks, nor deletion, nor the
// caller. A hook that calls runtime.Goexit (t.Fatal in a test) ends only the
// goroutine it runs on, as it would anywhere: the Manager's state was
// already updated, and later events and deletions still happen.
//
// An Event never carries a secret.
type Hooks struct {
	// OnAcquire: a lease was issued.
	OnAcquire func(Event)
	// OnRelease: a lease ended, however it ended (Event.Reason says how).
	OnRelease func(Event)
	// OnDenied: Acquire was refused by a limit, the Manager's or
	// Deepgram's (Event.Err is a *DeniedError).
	OnDenied func(Event)
	// OnError: a create, delete or sweep failed (Event.Op says which); for
	// deletes, Event.Final tells whether the deleter gave up on the key.
	OnError func(Event)
	// OnLeak: a live *Lease became unreachable without Release or Detach,
	// a caller bug. OnRelease fires first, with ReasonLeaked, and the key
	// is deleted all the same. Detection rides on the garbage collector: a
	// dropped lease that its TTL (or context) ends before a collection
	// notices is reported as ended by that path, not as a leak.
	OnLeak func(Event)
}

// Reason says how a lease ended.
type Reason int

// Reasons a lease ends.
const (
	// ReasonReleased: Release was called (on the Lease or the Manager).
	ReasonReleased Reason = iota + 1
	// ReasonContext: the context given to Acquire ended.
	ReasonContext
	// ReasonExpired: the lease's TTL passed.
	ReasonExpired
	// ReasonLeaked: the *Lease became unreachable without Release.
	ReasonLeaked
	// ReasonClosed: the Manager was closed.
	ReasonClosed
)

// String describes the reason, e.g. "released"; "live" for 0.
func (r Reason) String() string {
	switch r {
	case ReasonReleased:
		return "released"
	case ReasonContext:
		return "context done"
	case ReasonExpired:
		return "expired"
	case ReasonLeaked:
		return "leaked"
	case ReasonClosed:
		return "manager closed"
	}
	return "live"
}

// Event describes what happened to a lease; which hook receives it says
// what kind of event it is. It never holds a secret.
type Event struct {
	// Time is when it happened.
	Time time.Time
	// User the lease is (or would have been) for.
	User string
	// LeaseID is the lease's ID ([Lease.ID]).
	LeaseID string
	// KeyID is the Deepgram api_key_id ([Lease.KeyID]); empty for a grant
	// token and for a create that made no key.
	KeyID string
	// Expires is when the lease ends by itself (acquire and release
	// events).
	Expires time.Time
	// Reason is how a lease ended (release and leak events).
	Reason Reason
	// Err is the failure (error and denied events).
	Err error
	// Op is what failed (error events): "create", "delete" or "sweep".
	Op string
	// Attempt is the delete attempt that failed, from 1 (delete errors);
	// 0 when Close gave up on a key not yet attempted.
	Attempt int
	// Final is true when the deleter gave up on the key (delete errors).
	Final bool
	// RetryAfter is how long a denied caller should wait (denied events).
	RetryAfter time.Duration
}

// LogValue renders the event for log/slog.
func (e Event) LogValue() slog.Value {
	var attrs []slog.Attr
	if e.User != "" {
		attrs = append(attrs, slog.String("user", e.User))
	}
	if e.LeaseID != "" {
		attrs = append(attrs, slog.String("lease", e.LeaseID))
	}
	if e.KeyID != "" {
		attrs = append(attrs, slog.String("key_id", e.KeyID))
	}
	if e.Reason != 0 {
		attrs = append(attrs, slog.String("reason", e.Reason.String()))
	}
	if e.Op != "" {
		attrs = append(attrs, slog.String("op", e.Op))
	}
	if e.Attempt > 0 || e.Final {
		attrs = append(attrs, slog.Int("attempt", e.Attempt), slog.Bool("final", e.Final))
	}
	if e.RetryAfter > 0 {
		attrs = append(attrs, slog.Duration("retry_after", e.RetryAfter))
	}
	if e.Err != nil {
		attrs = append(attrs, slog.String("err", e.Err.Error()))
	}
	return slog.GroupValue(attrs...)
}

// LogHooks returns hooks that log every event to logger (slog.Default when
// nil), as a "lease" group whose "event" says which hook it came from:
// acquire and release at Info, denied and leak at Warn, error at Error. Combine them with your own: WithHooks(LogHooks(logger), mine).
func LogHooks(logger *slog.Logger) Hooks {
	if logger == nil {
		logger = slog.Default()
	}
	log := func(level slog.Level, event, msg string) func(Event) {
		return func(e Event) {
			attrs := append([]slog.Attr{slog.String("event", event)}, e.LogValue().Group()...)
			logger.LogAttrs(context.Background(), level, msg, slog.Attr{Key: "lease", Value: slog.GroupValue(attrs...)})
		}
	}
	return Hooks{
		OnAcquire: log(slog.LevelInfo, "acquire", "lease acquired"),
		OnRelease: log(slog.LevelInfo, "release", "lease ended"),
		OnDenied:  log(slog.LevelWarn, "denied", "lease denied"),
		OnError:   log(slog.LevelError, "error", "lease error"),
		OnLeak:    log(slog.LevelWarn, "leak", "lease leaked: Release was never called"),
	}
}

// hookSet holds every hook given to WithHooks, by event, in the order
// given. Each is called on its own, so that one that panics or exits its
// goroutine does not keep the earlier ones from having run.
type hookSet struct {
	acquire, release, denied, errs, leak []func(Event)
	panics                               atomic.Uint64
}

func (h *hookSet) add(hs Hooks) {
	add := func(fns []func(Event), f func(Event)) []func(Event) {
		if f == nil {
			return fns
		}
		return append(fns, f)
	}
	h.acquire = add(h.acquire, hs.OnAcquire)
	h.release = add(h.release, hs.OnRelease)
	h.denied = add(h.denied, hs.OnDenied)
	h.errs = add(h.errs, hs.OnError)
	h.leak = add(h.leak, hs.OnLeak)
}

// run calls each of fns with e on the calling goroutine.
func (h *hookSet) run(fns []func(Event), e Event) {
	for _, f := range fns {
		h.call(f, e)
	}
}

func (h *hookSet) call(f func(Event), e Event) {
	defer func() {
		if recover() != nil {
			h.panics.Add(1)
		}
	}()
	f(e)
}
