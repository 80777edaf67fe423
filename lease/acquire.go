package lease

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/dglease/dglease/keys"
)

// Acquire issues a credential for user that lives the Manager's TTL, and
// returns its lease. Before any network call it checks user (non-empty, at
// most MaxUserLen bytes, valid UTF-8), the lease caps and the per-user rate
// limit. Every refusal, by those limits or by Deepgram answering 429, is a
// *DeniedError matching ErrDenied that says when to retry, and fires
// OnDenied; a refusal by the Manager's limits creates nothing.
//
// The lease's TTL counts from when the credential arrives, and never runs
// past the credential's own expiry on Deepgram's side; a credential that
// arrives already expired (a create slower than the TTL plus the expiry
// margin) is deleted and Acquire fails: Acquire never returns a lease that
// has ended.
//
// The lease also ends when ctx ends. A backend that hands the secret to a
// browser must therefore not pass the HTTP request's context, which ends
// when the handler returns: pass context.WithoutCancel(r.Context()) and
// rely on a later Release or on the TTL.
//
// If ctx ends while the key is being created, Acquire returns ctx's error
// at once; the create finishes in the background (bounded by the create
// timeout) and its key is deleted as soon as it arrives. A key whose create
// answer is lost in flight carries the library's marker and is removed by
// Sweep once it has expired.
func (m *Manager) Acquire(ctx context.Context, user string) (*Lease, error) {
	if ctx == nil {
		return nil, errors.New("lease: Acquire needs a non-nil context")
	}
	if err := checkUser(user); err != nil {
		return nil, err
	}
	m.reapLeaks()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("lease: acquire for user %q: %w", user, err)
	}
	r, err := m.admit(user)
	if err != nil {
		return nil, err
	}
	if ctx.Done() == nil {
		return m.finishAcquire(ctx, r, m.issue(r))
	}
	// The create runs on its own goroutine so that Acquire can return
	// when ctx ends; its result then goes to orphan instead.
	// Unbuffered: a send succeeds only into the receive below, so exactly
	// one side owns the result.
	result := make(chan issued)
	go func() {
		res := m.issue(r)
		select {
		case result <- res:
		case <-ctx.Done():
			m.orphan(r, res.err)
		}
	}()
	select {
	case res := <-result:
		return m.finishAcquire(ctx, r, res)
	case <-ctx.Done():
		return nil, fmt.Errorf("lease: acquire for user %q: %w", user, ctx.Err())
	}
}

// checkUser validates a user ID given to Acquire.
func checkUser(u string) error {
	switch {
	case u == "":
		return errors.New("lease: user must not be empty")
	case len(u) > MaxUserLen:
		return fmt.Errorf("lease: user is %d bytes long; at most %d", len(u), MaxUserLen)
	case !utf8.ValidString(u):
		return errors.New("lease: user must be valid UTF-8")
	}
	return nil
}

// admit applies the caps and the rate limit, reserves a slot and counts
// the Acquire in m.creating. It returns the new lease's record.
func (m *Manager) admit(user string) (*record, error) {
	now := time.Now()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, ErrClosed
	}
	us := m.userLocked(user, now)
	if denied := m.checkLimitsLocked(user, us, now); denied != nil {
		us.usage.Denied++
		m.stats.Denied++
		m.mu.Unlock()
		m.hooks.run(m.hooks.denied, Event{Time: now, User: user, Err: denied, RetryAfter: denied.RetryAfter})
		return nil, denied
	}
	r := &record{m: m, us: us, leaseID: newID(), user: user, done: make(chan struct{})}
	us.live++
	m.pending++
	m.creates[r] = struct{}{}
	// Counted under m.mu, where Close sets m.closed: Close's wait for
	// creates in flight then sees every Acquire it did not refuse.
	m.creating.Add(1)
	m.mu.Unlock()
	return r, nil
}

// errArrivedExpired: the create answered after the credential's expiry.
var errArrivedExpired = errors.New("credential arrived already expired")

// issued is the outcome of a create.
type issued struct {
	usableUntil time.Time // the earliest the credential may stop working
	err         error
}

// issue creates the credential for r, bounded by the create timeout and by
// Close.
func (m *Manager) issue(r *record) issued {
	ctx, cancel := context.WithTimeout(m.baseCtx, m.cfg.createTimeout)
	defer cancel()
	until, err := m.cred.issue(ctx, r)
	return issued{usableUntil: until, err: err}
}

// finishAcquire turns a create's outcome into a live lease, or into an
// error with any key it made handed to the deleter. It settles r (ends its
// count in m.creating) before it runs any hook.
func (m *Manager) finishAcquire(ctx context.Context, r *record, res issued) (*Lease, error) {
	now := time.Now()
	err := res.err
	if err == nil {
		r.expires = now.Add(m.cfg.ttl)
		if res.usableUntil.Before(r.expires) {
			r.expires = res.usableUntil
		}
		if !r.expires.After(now) {
			err = fmt.Errorf("%w: the create took longer than the credential lives on Deepgram's side; raise WithExpiryMargin, or lower the create timeout (WithTimeouts)", errArrivedExpired)
		}
	}
	if err != nil {
		return nil, m.failAcquire(r, err, now)
	}
	m.mu.Lock()
	if m.closed {
		m.unreserveLocked(r)
		m.mu.Unlock()
		m.deleteKey(r)
		m.creating.Done()
		return nil, ErrClosed
	}
	m.pending--
	delete(m.creates, r)
	m.live[r.leaseID] = r
	m.stats.Acquired++
	r.us.usage.Acquired++
	r.us.usage.Live++
	m.armLeakCheckLocked()
	m.mu.Unlock()
	l := &Lease{h: &handle{r: r}}
	r.arm(ctx, l.h)
	m.creating.Done()
	r.announce(Event{Time: now, User: r.user, LeaseID: r.leaseID, KeyID: r.keyID, Expires: r.expires})
	if ctx.Err() != nil {
		// ctx ended as the result arrived: end the lease (its context
		// AfterFunc may be doing so too) and report ctx's error, never an
		// ended lease.
		r.end(ReasonContext)
		return nil, fmt.Errorf("lease: acquire for user %q: %w", r.user, ctx.Err())
	}
	return l, nil
}

// failAcquire settles a failed create and returns Acquire's error: a
// *DeniedError when Deepgram refused with 429, else the create's error.
func (m *Manager) failAcquire(r *record, err error, now time.Time) error {
	denied := deniedByDeepgram(r.user, err)
	m.mu.Lock()
	m.noteUnconfirmedLocked(r, err)
	m.unreserveLocked(r)
	if denied != nil {
		m.stats.Denied++
		r.us.usage.Denied++
	} else {
		m.stats.Errors++
	}
	m.mu.Unlock()
	m.deleteKey(r) // a key that came without a usable answer
	m.creating.Done()
	if denied != nil {
		m.hooks.run(m.hooks.denied, Event{Time: now, User: r.user, LeaseID: r.leaseID, Err: denied, RetryAfter: denied.RetryAfter})
		return denied
	}
	err = fmt.Errorf("lease: acquire for user %q: %w", r.user, err)
	m.hooks.run(m.hooks.errs, Event{Time: now, Op: "create", User: r.user, LeaseID: r.leaseID, KeyID: r.keyID, Err: err})
	return err
}

// orphan disposes of a create outcome whose caller has left.
func (m *Manager) orphan(r *record, err error) {
	m.mu.Lock()
	if err != nil {
		m.noteUnconfirmedLocked(r, err)
	}
	m.unreserveLocked(r)
	m.mu.Unlock()
	m.deleteKey(r)
	m.creating.Done()
	if err != nil {
		m.hooks.run(m.hooks.errs, Event{Time: time.Now(), Op: "create", User: r.user, LeaseID: r.leaseID, KeyID: r.keyID,
			Err: fmt.Errorf("lease: acquire for user %q (caller gone): %w", r.user, err)})
	}
}

func (m *Manager) unreserveLocked(r *record) {
	m.pending--
	delete(m.creates, r)
	r.us.live--
}

// noteUnconfirmedLocked remembers, while Close runs, a create whose
// outcome is unknown: no answer came, so a key may exist. Called in the
// same critical section that removes r from m.creates, so that Close names
// the create once, as failed or as in flight.
func (m *Manager) noteUnconfirmedLocked(r *record, err error) {
	var apiErr *keys.APIError
	if !m.cred.revocable() || r.keyID != "" || errors.As(err, &apiErr) {
		return // a token (nothing to delete), a key the deleter has, or an answer (nothing created)
	}
	if m.closed && len(m.unconfirmed) < maxUnconfirmed {
		m.unconfirmed = append(m.unconfirmed, Unconfirmed{LeaseID: r.leaseID, User: r.user, Err: err})
	}
}
