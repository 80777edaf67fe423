package lease

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"
)

// Lease is one short-lived credential for one user. Hand its Secret (or its
// Subprotocol) to the user, or open a stream with it, then Release it:
//
//	l, err := m.Acquire(ctx, user)
//	if err != nil { ... }
//	defer l.Release()
//
// However the lease ends (Release, the Acquire context ending, the TTL,
// every copy of the Lease becoming unreachable, Manager.Close) its key is
// deleted by the Manager's background deleter. A Lease may be copied: the
// copies are the same lease, and it counts as dropped only once every copy
// is. All methods are safe for concurrent use. A Lease prints redacted: its
// secret appears only through Secret and Subprotocol.
type Lease struct {
	h *handle
}

// handle is what every copy of a Lease shares, and what leak detection
// watches: it becomes unreachable only when no copy is left.
type handle struct {
	r *record
}

// record is a lease's state. It must never point back to its handle, or
// the cleanup that detects leaks could never run.
type record struct {
	leaseID string
	// key is idKey(leaseID), its key in Manager.live: kept since the ID's
	// bytes are a cache miss away when a random lease of a million is
	// released.
	key   uint64
	keyID string // "" for a grant token, or until the key exists
	// secret is never printed: fmt shows a Lease's handle as an address,
	// and Lease's String, Format and LogValue redact it.
	secret   string
	acquired time.Duration // when the lease became live, as time since us.m.epoch (8 bytes, not 24)
	expires  time.Time
	// serverExpires is when the credential stops working on Deepgram's side.
	serverExpires time.Time
	// us is the user's state in its Manager's users (us.m); it stays
	// there while this record counts in us.live. The pointer, us.m and
	// us.name never change; the rest of *us is guarded by us.m.mu.
	us *userState
	// release frees the lease's slot in the limiter.
	release func(issued bool)

	mu sync.Mutex
	// rare holds what few leases need (a Done channel, an end event held
	// back), made on first use: one pointer for both keeps the record in
	// its size class.
	rare *rareState
	// exp links the live leases by expiry (Manager.exp); guarded by
	// Manager.mu.
	exp     links[record]
	stopCtx func() bool
	// detached: Detach was called; a leak is no longer reported. The
	// cleanup is never stopped (stopping walks the span's list of
	// cleanups, which made Release slow with a million leases live): it
	// runs when the handle is collected and does nothing for a lease that
	// ended or was detached.
	detached bool
	leaked   bool // the handle became unreachable; ending is pending
	// announced is set once OnAcquire has returned; until then the end
	// event waits in rare.pendingEnd, so OnRelease never overtakes
	// OnAcquire.
	announced bool
	// handedOver is set once the key is with the deleter; rare.done is
	// closed then.
	handedOver bool
	// reason is why the lease ended, 0 while live: a Reason, kept in a
	// byte beside the flags to keep the record small.
	reason uint8
}

// rareState is the part of a record few leases need; guarded by
// record.mu.
type rareState struct {
	// done is made by the first Done call (most leases never need one)
	// and closed once the lease has ended and its key is with the
	// deleter (handedOver).
	done chan struct{}
	// pendingEnd is the end event of a lease that ended while OnAcquire
	// ran, delivered by announce.
	pendingEnd *Event
}

// rareLocked returns r.rare, made if needed; r.mu is held.
func (r *record) rareLocked() *rareState {
	if r.rare == nil {
		r.rare = &rareState{}
	}
	return r.rare
}

func (l *Lease) rec() *record {
	if l == nil || l.h == nil {
		return nil
	}
	return l.h.r
}

// Secret is the credential to hand over: an API key, or a grant JWT with
// WithGrantTokens. It stays readable after the lease ends, but the
// credential is then deleted (or, for a grant token, expiring).
func (l *Lease) Secret() string {
	if r := l.rec(); r != nil {
		return r.secret
	}
	return ""
}

// Subprotocol is the WebSocket subprotocol list a browser opens Deepgram's
// /v1/listen with, since a browser WebSocket cannot set headers:
// ["token", key] for an API key, ["bearer", jwt] for a grant token. It
// holds the secret. Each call returns a new slice.
func (l *Lease) Subprotocol() []string {
	r := l.rec()
	if r == nil {
		return nil
	}
	return []string{r.us.m.cred.scheme(), r.secret}
}

// ID is the lease's own ID: 16 lowercase hex characters, written into the
// key's marker, and what [Manager.Release] and [Manager.Owner] take.
func (l *Lease) ID() string {
	if r := l.rec(); r != nil {
		return r.leaseID
	}
	return ""
}

// KeyID is the Deepgram api_key_id of the leased key, or "" for a grant
// token, which has none.
func (l *Lease) KeyID() string {
	if r := l.rec(); r != nil {
		return r.keyID
	}
	return ""
}

// User is the user the lease was acquired for.
func (l *Lease) User() string {
	if r := l.rec(); r != nil {
		return r.us.name
	}
	return ""
}

// Expires is when the lease ends by itself: its TTL, counted from when the
// credential arrived, and never later than the credential's own expiry.
func (l *Lease) Expires() time.Time {
	if r := l.rec(); r != nil {
		return r.expires
	}
	return time.Time{}
}

// ServerExpires is when the credential stops working on Deepgram's side
// even if it is never deleted.
func (l *Lease) ServerExpires() time.Time {
	if r := l.rec(); r != nil {
		return r.serverExpires
	}
	return time.Time{}
}

// Revocable reports whether the credential is deleted when the lease ends
// (an API key), or only expires (a grant token: see WithGrantTokens).
func (l *Lease) Revocable() bool {
	if r := l.rec(); r != nil {
		return r.us.m.cred.revocable()
	}
	return false
}

// Done is closed once the lease has ended, however it ended.
func (l *Lease) Done() <-chan struct{} {
	r := l.rec()
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rs := r.rareLocked()
	if rs.done == nil {
		rs.done = make(chan struct{})
		if r.handedOver {
			close(rs.done)
		}
	}
	return rs.done
}

// Reason says how the lease ended, or 0 while it is live.
func (l *Lease) Reason() Reason {
	r := l.rec()
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return Reason(r.reason)
}

// Release ends the lease and hands its key to the background deleter. It
// returns once OnRelease hooks have run, never waits on the network, and
// may be called any number of times from any goroutine; calls after the
// first do nothing. A grant token cannot be revoked: Release ends the lease
// locally and the token works until it expires.
func (l *Lease) Release() {
	if r := l.rec(); r != nil {
		r.end(ReasonReleased)
		runtime.KeepAlive(l.h) // no leak report while Release runs
	}
}

// Detach turns off leak detection for l: the lease then ends only by
// Release (on l or through [Manager.Release] with its ID), its context, its
// TTL or Close, even if l itself is dropped. Use it when the *Lease is not
// kept, e.g. after handing the secret to a browser that will report back
// with the lease ID. Idempotent.
func (l *Lease) Detach() {
	r := l.rec()
	if r == nil {
		return
	}
	r.mu.Lock()
	r.detached = true
	r.mu.Unlock()
	runtime.KeepAlive(l.h) // the cleanup cannot report a leak before this
}

// String describes the lease with its secret redacted.
func (l Lease) String() string {
	r := l.rec()
	if r == nil {
		return "lease.Lease{}"
	}
	kind := "key"
	if !r.us.m.cred.revocable() {
		kind = "grant token"
	}
	return fmt.Sprintf("lease.Lease{%s ID:%q KeyID:%q User:%q Expires:%s Secret:%q}", kind, r.leaseID, r.keyID, r.us.name, r.expires.UTC().Format(time.RFC3339), "[REDACTED]")
}

// Format prints the redacted description for every verb, %#v included.
func (l Lease) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		fmt.Fprintf(f, "%q", l.String())
		return
	}
	fmt.Fprint(f, l.String())
}

// LogValue implements [slog.LogValuer]: the secret is redacted.
func (l Lease) LogValue() slog.Value {
	r := l.rec()
	if r == nil {
		return slog.GroupValue()
	}
	return slog.GroupValue(
		slog.String("lease", r.leaseID),
		slog.String("key_id", r.keyID),
		slog.String("user", r.us.name),
		slog.Time("expires", r.expires),
		slog.String("secret", "[REDACTED]"),
	)
}

// arm starts the lease's automatic endings besides its TTL (the
// Manager's expiry list has it): its context, and the leak cleanup on h.
func (r *record) arm(ctx context.Context, h *handle) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reason != 0 {
		return
	}
	if ctx.Done() != nil {
		r.stopCtx = context.AfterFunc(ctx, func() { r.end(ReasonContext) })
	}
	runtime.AddCleanup(h, (*record).leak, r)
}

// end ends the lease once; later calls do nothing. It updates the
// Manager's state and hands the key to the deleter before any hook runs.
// A lease found leaked ends as leaked even when its TTL passes first.
func (r *record) end(reason Reason) {
	r.mu.Lock()
	if r.reason != 0 {
		r.mu.Unlock()
		return
	}
	if reason == ReasonExpired && r.leaked {
		reason = ReasonLeaked
	}
	r.reason = uint8(reason)
	// Counted before the reason is visible to anyone else: Close, which
	// may find this lease already ending, waits for m.ended to hand its
	// key to the deleter before it drains the deleter.
	r.us.m.ending.Add(1)
	if r.stopCtx != nil {
		r.stopCtx()
	}
	r.mu.Unlock()
	e := r.us.m.ended(r, reason)
	// Done is closed once the key is with the deleter: a Flush after
	// <-Done() covers it.
	r.us.m.ending.Done()
	r.mu.Lock()
	r.handedOver = true
	if r.rare != nil && r.rare.done != nil {
		close(r.rare.done)
	}
	if !r.announced {
		r.rareLocked().pendingEnd = &e // announce delivers it once OnAcquire returns
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	r.us.m.emitEnd(e)
}

// announce runs the OnAcquire hooks with e, then delivers the lease's end
// event if the lease ended meanwhile: also when a hook exits the goroutine
// (runtime.Goexit), since deferred calls still run. It returns why the
// lease has ended, or 0 if it is live, as of the end of the hooks.
func (r *record) announce(e Event) (ended Reason) {
	defer func() {
		r.mu.Lock()
		r.announced = true
		ended = Reason(r.reason)
		var pending *Event
		if r.rare != nil {
			pending, r.rare.pendingEnd = r.rare.pendingEnd, nil
		}
		r.mu.Unlock()
		if pending != nil {
			r.us.m.emitEnd(*pending)
		}
	}()
	r.us.m.hooks.run(r.us.m.hooks.acquire, e)
	return 0 // set by the deferred call
}

func (r *record) link() *links[record] { return &r.exp }
