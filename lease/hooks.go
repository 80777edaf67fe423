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
// inside Acquire; OnRelease inside Lease.Release, Manager.Release or Close,
// or on the timer or context goroutine that ended the lease; OnRelease and
// OnLeak of a leaked lease on the Manager's leak check, or inside whichever
// Acquire or Close comes first; OnError inside Acquire (create failures),
// on a deleter goroutine (delete failures), on the periodic sweep's
// goroutine, or, for keys the deleter can no longer take because Close
// gave up, inside Close or the call that ended the lease; OnDelete on a
// deleter goroutine. A lease's key is handed to the deleter before its
// OnRelease runs, so its OnDelete or delete OnError may come first. No
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
	// OnError: a create, delete, sweep or the limiter failed (Event.Op
	// says which).
	// Event.Final tells whether it is given up on: always for a create
	// (Acquire does not retry), for a delete when the deleter gave up on
	// the key.
	OnError func(Event)
	// OnDelete: the deleter deleted a key, or Deepgram answered that it
	// was already gone (Event.AlreadyDeleted). Event.Latency is the
	// successful call's.
	OnDelete func(Event)
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
	// ServerExpires is when the credential stops working on Deepgram's
	// side even if it is never deleted (acquire events;
	// [Lease.ServerExpires]).
	ServerExpires time.Time
	// Reason is how a lease ended (release and leak events).
	Reason Reason
	// Err is the failure (error and denied events).
	Err error
	// Op is what failed (error events): "create", "delete", "sweep", or
	// "limit" for the Limiter (see Admission.Report).
	Op string
	// Attempt is the delete attempt the event reports, from 1 (delete
	// errors and deletions); 0 when Close gave up on the key, with no
	// attempt to report.
	Attempt int
	// Final is true when the failure is given up on (error events): always
	// for a create, for a delete when the deleter gave up on the key.
	Final bool
	// RetryAfter is how long a denied caller should wait (denied events).
	RetryAfter time.Duration
	// Latency is how long the call to Deepgram that the event reports
	// took: the create (acquire events, create errors, refusals by
	// Deepgram) or the delete attempt (delete errors and deletions).
	Latency time.Duration
	// Lifetime is how long the lease was live (release and leak events).
	Lifetime time.Duration
	// AlreadyDeleted is true when Deepgram answered that the key was
	// already gone (delete events), e.g. because another replica deleted
	// it (Manager.ReleaseForeign).
	AlreadyDeleted bool
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
	if e.Latency > 0 {
		attrs = append(attrs, slog.Duration("latency", e.Latency))
	}
	if e.Lifetime > 0 {
		attrs = append(attrs, slog.Duration("lifetime", e.Lifetime))
	}
	if e.AlreadyDeleted {
		attrs = append(attrs, slog.Bool("already_deleted", true))
	}
	if e.Err != nil {
		attrs = append(attrs, slog.String("err", e.Err.Error()))
	}
	return slog.GroupValue(attrs...)
}

// LogHooks returns hooks that log every event to logger (slog.Default when
// nil), as a "lease" group whose "event" says which hook it came from:
// acquire and release at Info, denied and leak at Warn, error at Error,
// delete at Debug. Combine them with your own: WithHooks(LogHooks(logger), mine).
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
		OnDelete:  log(slog.LevelDebug, "delete", "key deleted"),
	}
}

// hookSet holds every hook given to WithHooks, by event, in the order
// given. Each is called on its own: one that panics is recovered, and one
// that ends its goroutine (runtime.Goexit) does not keep the later ones
// from running (see each).
type hookSet struct {
	acquire, release, denied, errs, leak, deleted []func(Event)
	panics                                        atomic.Uint64
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
	h.deleted = add(h.deleted, hs.OnDelete)
}

// run calls each of fns with e on the calling goroutine; if one ends the
// goroutine (runtime.Goexit), the deferred call runs the rest first. (The
// same as each, written out so that e, which the deferred closure captures,
// stays on the stack: a closure passed to each would move it to the heap
// on every event.)
func (h *hookSet) run(fns []func(Event), e Event) {
	if len(fns) == 0 {
		return
	}
	i := 0
	defer func() {
		if i < len(fns) { // fns[i] did not return
			h.run(fns[i+1:], e)
		}
	}()
	for ; i < len(fns); i++ {
		h.call(fns[i], e)
	}
}

// each calls f with every element of xs, in order, on the calling
// goroutine. If f ends the goroutine (runtime.Goexit, e.g. a hook calling
// t.FailNow), a deferred call goes through the rest before the goroutine
// ends: one hook's Goexit never skips another hook, nor the hooks of the
// other leases or keys a loop reports.
func each[T any](xs []T, f func(T)) {
	i := 0
	defer func() {
		if i < len(xs) { // f(xs[i]) did not return
			each(xs[i+1:], f)
		}
	}()
	for ; i < len(xs); i++ {
		f(xs[i])
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
