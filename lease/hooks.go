package lease

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Hooks are called on lease events. Any field may be nil.
//
// Contract: hooks run one at a time, in event order, on a goroutine of the
// Manager's, never with the Manager's locks held and never on the caller's
// or the deleter's path: a slow hook delays only later hooks, and a hook
// that panics is recovered (the panic is dropped) without affecting leases
// or deletion. If hooks fall more than 10,000 events behind, further events
// are dropped and counted in [Stats].HookEventsDropped. Close waits for
// queued events to be delivered while its context allows, for at most 5 s:
// a stuck hook cannot hang Close (its goroutine is left to finish). An Event never
// carries a secret.
type Hooks struct {
	// OnAcquire: a lease was issued.
	OnAcquire func(Event)
	// OnRelease: a lease ended (Event.Reason says how), including by leak.
	OnRelease func(Event)
	// OnDenied: Acquire was refused by a rate limit or cap.
	OnDenied func(Event)
	// OnError: a create, delete or sweep failed; for deletes Event.Final
	// tells whether the deleter gave up on the key.
	OnError func(Event)
	// OnLeak: a live *Lease became unreachable without Release (or
	// Detach): a caller bug. Its key is deleted all the same, and OnRelease
	// fires too. Detection rides on the garbage collector: a dropped lease
	// whose TTL (or context) ends it before a collection notices is
	// reported as ended by that path, not as a leak.
	OnLeak func(Event)
}

// EventKind says which hook an Event is for.
//
// A plain value: safe to copy and to read from several goroutines; nothing
// in it changes after it is returned.
type EventKind int

// Event kinds.
const (
	EventAcquire EventKind = iota + 1
	EventRelease
	EventDenied
	EventError
	EventLeak
)

// String returns the kind's name, e.g. "acquire".
func (k EventKind) String() string {
	switch k {
	case EventAcquire:
		return "acquire"
	case EventRelease:
		return "release"
	case EventDenied:
		return "denied"
	case EventError:
		return "error"
	case EventLeak:
		return "leak"
	}
	return "unknown"
}

// Reason says how a lease ended.
//
// A plain value: safe to copy and to read from several goroutines; nothing
// in it changes after it is returned.
type Reason int

// Reasons a lease ends.
const (
	// ReasonReleased: Release was called.
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

// Event describes what happened to a lease. It never holds a secret.
//
// A plain value: safe to copy and to read from several goroutines; nothing
// in it changes after it is returned.
type Event struct {
	Kind EventKind
	// Time is when it happened.
	Time time.Time
	// User the lease is (or would have been) for.
	User string
	// LeaseID is the lease's ID (Lease.ID is the key ID).
	LeaseID string
	// KeyID is the Deepgram key ID, or the local ID of a grant token.
	KeyID string
	// Expires is when the lease's credential expires.
	Expires time.Time
	// Reason is how a lease ended (release and leak events).
	Reason Reason
	// Err is the failure (error and denied events).
	Err error
	// Op is what failed (error events): "create", "delete" or "sweep".
	Op string
	// Attempt is the delete attempt that failed, from 1 (error events);
	// 0 when Close gave up on a key not yet attempted.
	Attempt int
	// Final is true when the deleter gave up on the key (error events).
	Final bool
	// RetryAfter is how long a denied caller should wait (denied events).
	RetryAfter time.Duration
}

// LogValue renders the event for log/slog.
func (e Event) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("event", e.Kind.String())}
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

// LogHooks returns hooks that log every event to logger: acquire and
// release at Info, denied and leak at Warn, error at Error. Combine with
// your own hooks with [Hooks.Then].
func LogHooks(logger *slog.Logger) Hooks {
	if logger == nil {
		logger = slog.Default()
	}
	log := func(level slog.Level, msg string) func(Event) {
		return func(e Event) {
			logger.LogAttrs(context.Background(), level, msg, slog.Any("lease", e))
		}
	}
	return Hooks{
		OnAcquire: log(slog.LevelInfo, "lease acquired"),
		OnRelease: log(slog.LevelInfo, "lease ended"),
		OnDenied:  log(slog.LevelWarn, "lease denied"),
		OnError:   log(slog.LevelError, "lease error"),
		OnLeak:    log(slog.LevelWarn, "lease leaked: Release was never called"),
	}
}

// Then returns hooks that call h's hook and then next's for every event.
func (h Hooks) Then(next Hooks) Hooks {
	both := func(a, b func(Event)) func(Event) {
		switch {
		case a == nil:
			return b
		case b == nil:
			return a
		}
		return func(e Event) { a(e); b(e) }
	}
	return Hooks{
		OnAcquire: both(h.OnAcquire, next.OnAcquire),
		OnRelease: both(h.OnRelease, next.OnRelease),
		OnDenied:  both(h.OnDenied, next.OnDenied),
		OnError:   both(h.OnError, next.OnError),
		OnLeak:    both(h.OnLeak, next.OnLeak),
	}
}

func (h Hooks) hook(k EventKind) func(Event) {
	switch k {
	case EventAcquire:
		return h.OnAcquire
	case EventRelease:
		return h.OnRelease
	case EventDenied:
		return h.OnDenied
	case EventError:
		return h.OnError
	case EventLeak:
		return h.OnLeak
	}
	return nil
}

// maxHookBacklog bounds queued hook events.
const maxHookBacklog = 10000

// dispatcher delivers events to hooks on one goroutine that exists only
// while events are queued.
type dispatcher struct {
	hooks Hooks

	mu      sync.Mutex
	queue   []Event
	dropped uint64
	idle    chan struct{} // non-nil while the goroutine runs; closed when it ends
}

func (d *dispatcher) emit(e Event) {
	if d.hooks.hook(e.Kind) == nil {
		return
	}
	d.mu.Lock()
	if len(d.queue) >= maxHookBacklog {
		d.dropped++
		d.mu.Unlock()
		return
	}
	d.queue = append(d.queue, e)
	if d.idle == nil {
		d.idle = make(chan struct{})
		go d.run()
	}
	d.mu.Unlock()
}

func (d *dispatcher) run() {
	for {
		d.mu.Lock()
		if len(d.queue) == 0 {
			d.queue = nil
			close(d.idle)
			d.idle = nil
			d.mu.Unlock()
			return
		}
		e := d.queue[0]
		d.queue[0] = Event{}
		d.queue = d.queue[1:]
		d.mu.Unlock()
		d.call(e)
	}
}

func (d *dispatcher) call(e Event) {
	defer func() { _ = recover() }()
	d.hooks.hook(e.Kind)(e)
}

// wait blocks until the queue is empty or ctx ends.
func (d *dispatcher) wait(ctx context.Context) error {
	d.mu.Lock()
	idle := d.idle
	d.mu.Unlock()
	if idle == nil {
		return nil
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *dispatcher) droppedCount() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dropped
}
