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
// arrives with less than a second (or the TTL, if shorter) of its life
// left (a create nearly as slow as the TTL plus the expiry margin) is
// deleted and Acquire fails. Acquire never returns a lease that has ended,
// not even one that ended while OnAcquire hooks ran.
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
	r, err := m.admit(ctx, user)
	if err != nil {
		return nil, err
	}
	if ctx.Done() == nil {
		return m.finishAcquire(ctx, r, m.issue(r))
	}
	// The create runs on its own goroutine so that Acquire can return
	// when ctx ends; its result then goes to orphan instead.
	// Unbuffered: a send succeeds only into the receive below, so exactly
	// one side owns the result. A caller that leaves first reserves a
	// place in the deleter's current Flush generation and passes it on
	// left, so that a Flush called after Acquire returns waits for the
	// key the create may still bring.
	result, left := make(chan issued), make(chan uint64, 1)
	go func() {
		res := m.issue(r)
		select {
		case result <- res:
		case gen := <-left:
			m.orphan(r, res, gen)
		}
	}()
	select {
	case res := <-result:
		return m.finishAcquire(ctx, r, res)
	case <-ctx.Done():
		left <- m.del.reserve()
		return nil, fmt.Errorf("lease: acquire for user %q: %w", user, ctx.Err())
	}
}

// checkUser validates a user ID given to Acquire. Its errors match
// ErrInvalidUser.
func checkUser(u string) error {
	switch {
	case u == "":
		return userError("lease: user must not be empty")
	case len(u) > MaxUserLen:
		return userError(fmt.Sprintf("lease: user is %d bytes long; at most %d", len(u), MaxUserLen))
	case !utf8.ValidString(u):
		return userError("lease: user must be valid UTF-8")
	}
	return nil
}

// ErrInvalidUser is matched (errors.Is) by the error Acquire, UserTag and
// StreamedAudio return for a user ID they cannot take: empty, over
// MaxUserLen bytes, or not valid UTF-8. It is the caller's bug, not
// Deepgram's.
var ErrInvalidUser = errors.New("lease: invalid user")

// userError is checkUser's error: its own message, matching
// ErrInvalidUser.
type userError string

func (e userError) Error() string        { return string(e) }
func (e userError) Is(target error) bool { return target == ErrInvalidUser }

// admit counts the Acquire in m.creating, then asks the limiter; it
// returns the new lease's record, holding its slot in the limits.
func (m *Manager) admit(ctx context.Context, user string) (*record, error) {
	now := time.Now()
	leaseID, key := newKeyedID() // before m.mu: it takes a lock of its own
	// Read before m.mu: it may take deleter.mu. The count is approximate
	// anyway (the deleter moves on meanwhile).
	pending := m.del.count() + m.del.stillWorking(now)
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, ErrClosed
	}
	// Back-pressure: keys in existence (live or in flight, waiting to be
	// deleted, or given up on and still working until their expiry) are
	// bounded, whatever the per-user limits say.
	if len(m.live)+len(m.creates)+pending >= m.cfg.maxKeys {
		m.deniedLocked(m.userLocked(user, now))
		m.mu.Unlock()
		return nil, m.emitDenied(&DeniedError{User: user, Limit: LimitKeys, RetryAfter: keysRetryAfter}, Event{Time: now, User: user})
	}
	us := m.userLocked(user, now)
	r := &record{us: us, leaseID: leaseID, key: key}
	us.live++
	m.creates[r] = struct{}{}
	// Counted under m.mu, where Close sets m.closed: Close's wait for
	// creates in flight then sees every Acquire it did not refuse.
	m.creating.Add(1)
	m.mu.Unlock()

	release, err := m.limiter.Admit(ctx, Admission{User: user, LeaseID: r.leaseID, Limits: m.limits, Hold: m.hold, Report: m.reportLimit})
	if release != nil {
		if err != nil {
			m.reportLimitError(err) // admitted all the same, by a fallback
		}
		r.release = release
		return r, nil
	}
	var denied *DeniedError
	isDenied := errors.As(err, &denied)
	if err == nil {
		err = errors.New("the limiter admitted nothing and gave no reason")
	}
	m.mu.Lock()
	m.unreserveLocked(r)
	if isDenied {
		m.deniedLocked(us)
	}
	m.mu.Unlock()
	m.creating.Done()
	switch {
	case isDenied:
		// The user is Acquire's: a Limiter need not fill DeniedError.User.
		return nil, m.emitDenied(denied, Event{Time: now, User: user})
	case ctx.Err() != nil:
		return nil, fmt.Errorf("lease: acquire for user %q: %w", user, ctx.Err())
	}
	err = fmt.Errorf("lease: acquire for user %q: %w: %w", user, ErrLimiterUnavailable, err)
	m.hooks.run(m.hooks.errs, Event{Time: now, Op: "limit", User: user, Err: err, Final: true})
	return nil, err
}

// deniedLocked counts a refusal of us's Acquire; m.mu is held.
func (m *Manager) deniedLocked(us *userState) {
	us.usage.Denied++
	m.stats.Denied++
}

// emitDenied runs the OnDenied hooks for d, with e's other fields, and
// returns d.
func (m *Manager) emitDenied(d *DeniedError, e Event) *DeniedError {
	e.Err, e.RetryAfter = d, d.RetryAfter
	m.hooks.run(m.hooks.denied, e)
	return d
}

// keysRetryAfter is the RetryAfter of a refusal by the cap on keys in
// existence: the deleter works through a backlog in round trips.
const keysRetryAfter = time.Second

// reportLimitError reports a problem the limiter worked around (see
// Admission.Report).
func (m *Manager) reportLimitError(err error) {
	m.hooks.run(m.hooks.errs, Event{Time: time.Now(), Op: "limit", Err: fmt.Errorf("lease: limiter: %w", err)})
}

// releaseSlot frees r's slot in the limits; called once, when r's create
// failed or its lease ended, with no lock held.
func (r *record) releaseSlot(issued bool) {
	if r.release != nil {
		r.release(issued)
	}
}

// errArrivedLate: the create answered too close to (or after) the
// credential's expiry on Deepgram's side.
var errArrivedLate = errors.New("the credential arrived too late to be used")

// minLeaseLife is the least life (or the TTL, if shorter) a credential
// must have left when it arrives, or Acquire refuses it.
const minLeaseLife = time.Second

// issued is the outcome of a create.
type issued struct {
	usableUntil time.Time     // the earliest the credential may stop working
	end         time.Time     // when the answer came
	latency     time.Duration // how long the create took
	err         error
}

// issue creates the credential for r, bounded by the create timeout and by
// Close.
func (m *Manager) issue(r *record) issued {
	start := time.Now()
	// WithDeadline from start: WithTimeout would read the clock again.
	ctx, cancel := context.WithDeadline(m.baseCtx, start.Add(m.cfg.createTimeout))
	defer cancel()
	until, end, err := m.cred.issue(ctx, r, start)
	return issued{usableUntil: until, end: end, latency: end.Sub(start), err: err}
}

// finishAcquire turns a create's outcome into a live lease, or into an
// error with any key it made handed to the deleter. It settles r (ends its
// count in m.creating) before it runs any hook.
func (m *Manager) finishAcquire(ctx context.Context, r *record, res issued) (*Lease, error) {
	now := res.end
	err := res.err
	if err == nil {
		r.expires = now.Add(m.cfg.ttl)
		if res.usableUntil.Before(r.expires) {
			r.expires = res.usableUntil
		}
		if left, least := r.expires.Sub(now), min(m.cfg.ttl, minLeaseLife); left < least {
			err = fmt.Errorf("%w: %s of its life left, less than %s: the create took nearly as long as the credential lives on Deepgram's side; raise WithExpiryMargin, or lower the create timeout (WithTimeouts)",
				errArrivedLate, max(left, 0).Round(time.Millisecond), least)
		}
	}
	if err != nil {
		return nil, m.failAcquire(r, err, now, res.latency, nil)
	}
	m.mu.Lock()
	if m.closed {
		m.unreserveLocked(r)
		m.mu.Unlock()
		m.dropCreate(r, nil)
		return nil, ErrClosed
	}
	delete(m.creates, r)
	r.acquired = now.Sub(m.epoch)
	m.live[r.key] = r
	m.insertExpiryLocked(r)
	m.stats.Acquired++
	r.us.usage.Acquired++
	r.us.usage.Live++
	m.armLeakCheckLocked()
	m.mu.Unlock()
	l := &Lease{h: &handle{r: r}}
	r.arm(ctx, l.h)
	m.creating.Done()
	ended := r.announce(Event{Time: now, User: r.us.name, LeaseID: r.leaseID, KeyID: r.keyID, Expires: r.expires, ServerExpires: r.serverExpires, Latency: res.latency})
	// Never return an ended lease: ctx may have ended as the result
	// arrived, and the lease may have ended while OnAcquire ran (Close, a
	// Release from the hook, its TTL).
	if ctx.Err() != nil {
		r.end(ReasonContext) // its context AfterFunc may be doing so too
		return nil, fmt.Errorf("lease: acquire for user %q: %w", r.us.name, ctx.Err())
	}
	switch ended {
	case 0:
		return l, nil
	case ReasonClosed:
		return nil, ErrClosed
	default:
		return nil, fmt.Errorf("lease: acquire for user %q: the lease ended (%s) before Acquire could return it", r.us.name, ended)
	}
}

// failAcquire settles a failed create and returns Acquire's error: a
// *DeniedError when Deepgram refused with 429, else the create's error.
func (m *Manager) failAcquire(r *record, err error, now time.Time, latency time.Duration, gen *uint64) error {
	denied := deniedByDeepgram(r.us.name, err)
	m.mu.Lock()
	m.noteUnconfirmedLocked(r, err)
	m.unreserveLocked(r)
	if denied != nil {
		m.deniedLocked(r.us)
	} else {
		m.stats.Errors++
	}
	m.mu.Unlock()
	m.dropCreate(r, gen) // a key that came without a usable answer is deleted
	if denied != nil {
		return m.emitDenied(denied, Event{Time: now, User: r.us.name, LeaseID: r.leaseID, Latency: latency})
	}
	err = fmt.Errorf("lease: acquire for user %q: %w", r.us.name, err)
	m.hooks.run(m.hooks.errs, Event{Time: now, Op: "create", User: r.us.name, LeaseID: r.leaseID, KeyID: r.keyID, Err: err, Final: true, Latency: latency})
	return err
}

// orphan disposes of a create outcome whose caller has left. A failed
// create is counted and reported as a failed Acquire would be; a key it
// made is deleted at once, in the Flush generation gen the caller
// reserved.
func (m *Manager) orphan(r *record, res issued, gen uint64) {
	defer m.del.unreserve(gen) // once the key, if any, is queued
	if res.err != nil {
		_ = m.failAcquire(r, fmt.Errorf("caller gone: %w", res.err), res.end, res.latency, &gen)
		return
	}
	m.mu.Lock()
	m.unreserveLocked(r)
	m.mu.Unlock()
	m.dropCreate(r, &gen)
}

// dropCreate settles a create that yields no lease, after unreserveLocked:
// its limiter slot is freed, the key it made (if any) goes to the deleter
// (in Flush generation gen, if set), and its count in m.creating ends.
func (m *Manager) dropCreate(r *record, gen *uint64) {
	r.releaseSlot(false)
	defer m.creating.Done() // deleteKey may run hooks (the deleter is stopped)
	m.deleteKey(r, gen)
}

// unreserveLocked takes r out of the creates in flight and its user's count.
func (m *Manager) unreserveLocked(r *record) {
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
		m.unconfirmed = append(m.unconfirmed, Unconfirmed{LeaseID: r.leaseID, User: r.us.name, Err: err})
	}
}
