package lease

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"
)

// Lease is one short-lived credential for one user. Hand its Secret to the
// user (or open a stream with it), then Release it:
//
//	l, err := m.Acquire(ctx, user)
//	if err != nil { ... }
//	defer l.Release()
//
// However the lease ends (Release, the Acquire context ending, the TTL, the
// *Lease becoming unreachable, Manager.Close) its key is deleted by the
// Manager's background deleter. All methods are safe for concurrent use.
// A Lease prints redacted: its secret appears only through Secret.
type Lease struct {
	r *record
}

// record is a lease's state. It must never point back to its *Lease, or
// the cleanup that detects leaks could never run.
type record struct {
	m       *Manager
	leaseID string
	keyID   string
	user    string
	// secret is behind a pointer so that printing a record (even through a
	// copied Lease value) shows an address, never the secret.
	secret  *string
	expires time.Time
	// serverExpires is when the credential stops working on Deepgram's side.
	serverExpires time.Time
	// us is the user's state in m.users; it stays there while this
	// record counts in us.live. Guarded by m.mu.
	us   *userState
	done chan struct{}

	mu      sync.Mutex
	reason  Reason
	timer   *time.Timer
	stopCtx func() bool
	cleanup runtime.Cleanup // zero (Stop is a no-op) until armed and after Detach
	leaked  bool            // the *Lease became unreachable; ending is pending
}

// Secret is the credential to hand over: an API key, or a grant JWT with
// WithGrantTokens. It is the only place the secret appears. It stays
// readable after the lease ends, but the credential is then deleted (or, for
// a grant token, expiring).
func (l *Lease) Secret() string { return *l.r.secret }

// ID is the Deepgram api_key_id of the leased key, or a local ID
// ("grant-...") for a grant token.
func (l *Lease) ID() string { return l.r.keyID }

// LeaseID is the lease's own ID, also written into the key's marker.
func (l *Lease) LeaseID() string { return l.r.leaseID }

// User is the user the lease was acquired for.
func (l *Lease) User() string { return l.r.user }

// Expires is when the lease ends by itself (its TTL). The key itself lives
// on Deepgram's side until ServerExpires.
func (l *Lease) Expires() time.Time { return l.r.expires }

// ServerExpires is when the credential stops working on Deepgram's side
// even if it was never deleted.
func (l *Lease) ServerExpires() time.Time { return l.r.serverExpires }

// GrantToken reports whether the lease is a grant token (not revocable)
// rather than an API key.
func (l *Lease) GrantToken() bool { return l.r.m.cfg.grant }

// Done is closed once the lease has ended, however it ended.
func (l *Lease) Done() <-chan struct{} { return l.r.done }

// Reason says how the lease ended, or 0 while it is live.
func (l *Lease) Reason() Reason {
	l.r.mu.Lock()
	defer l.r.mu.Unlock()
	return l.r.reason
}

// Release ends the lease and hands its key to the background deleter. It
// returns at once, never waits on the network, and may be called any number
// of times from any goroutine; calls after the first do nothing. A grant
// token cannot be revoked: Release ends the lease locally and the token
// works until it expires.
func (l *Lease) Release() {
	l.r.end(ReasonReleased)
	runtime.KeepAlive(l)
}

// Detach turns off leak detection for l: the lease then ends only by
// Release (on l or through [Manager.Release] with its LeaseID), its
// context, its TTL or Close, even if l itself is dropped. Use it when the
// *Lease is not kept, e.g. after handing the secret to a browser that will
// report back with the lease ID. Safe for concurrent use; idempotent.
func (l *Lease) Detach() {
	r := l.r
	r.mu.Lock()
	if r.reason == 0 {
		r.cleanup.Stop()
		r.cleanup = runtime.Cleanup{}
	}
	r.mu.Unlock()
	runtime.KeepAlive(l)
}

// String describes the lease with its secret redacted.
func (l Lease) String() string {
	kind := "key"
	if l.r.m.cfg.grant {
		kind = "grant token"
	}
	return fmt.Sprintf("lease.Lease{%s ID:%q User:%q Expires:%s Secret:%q}", kind, l.r.keyID, l.r.user, l.r.expires.UTC().Format(time.RFC3339), "[REDACTED]")
}

// GoString is String: %#v never shows the secret.
func (l Lease) GoString() string { return l.String() }

// Format prints the redacted description for every verb.
func (l Lease) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		fmt.Fprintf(f, "%q", l.String())
		return
	}
	fmt.Fprint(f, l.String())
}

// LogValue implements [slog.LogValuer]: the secret is redacted.
func (l Lease) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("id", l.r.keyID),
		slog.String("lease", l.r.leaseID),
		slog.String("user", l.r.user),
		slog.Time("expires", l.r.expires),
		slog.String("secret", "[REDACTED]"),
	)
}

// arm starts the lease's three automatic endings: its TTL timer, its
// context, and the leak cleanup on l.
func (r *record) arm(ctx context.Context, l *Lease) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reason != 0 {
		return
	}
	r.timer = time.AfterFunc(time.Until(r.expires), r.expire)
	if ctx.Done() != nil {
		r.stopCtx = context.AfterFunc(ctx, func() { r.end(ReasonContext) })
	}
	r.cleanup = runtime.AddCleanup(l, (*record).leak, r)
}

// leak runs on the runtime's cleanup goroutine once the *Lease is
// unreachable. That goroutine belongs to no testing/synctest bubble, so it
// only marks the record and queues it: the lease is ended by the Manager's
// next call (Acquire, Close, Sweep, Stats, Usage) or by its TTL timer,
// whichever comes first, on a goroutine that may touch its timers and
// channels.
func (r *record) leak() {
	r.mu.Lock()
	if r.reason != 0 || r.leaked {
		r.mu.Unlock()
		return
	}
	r.leaked = true
	r.mu.Unlock()
	r.m.queueLeak(r)
}

// expire is the TTL timer's function.
func (r *record) expire() {
	r.mu.Lock()
	leaked := r.leaked
	r.mu.Unlock()
	if leaked {
		r.end(ReasonLeaked)
		return
	}
	r.end(ReasonExpired)
}

// end ends the lease once; later calls do nothing.
func (r *record) end(reason Reason) {
	r.mu.Lock()
	if r.reason != 0 {
		r.mu.Unlock()
		return
	}
	r.reason = reason
	// Counted before the reason is visible to anyone else: Close, which
	// may find this lease already ending, waits for m.ended to hand its
	// key to the deleter before it drains the deleter.
	r.m.ending.Add(1)
	if r.timer != nil {
		r.timer.Stop()
	}
	if r.stopCtx != nil {
		r.stopCtx()
	}
	if reason != ReasonLeaked { // a leak's cleanup has already run
		r.cleanup.Stop()
	}
	close(r.done)
	r.mu.Unlock()
	r.m.ended(r, reason)
	r.m.ending.Done()
}
