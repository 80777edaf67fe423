package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/dglease/dglease/keys"
)

// KeyService is what a Manager needs from Deepgram. *keys.Client implements
// it; so does a client of keys/keystest's fake. Implementations must be safe
// for concurrent use and must not retry creates by themselves.
type KeyService interface {
	Create(ctx context.Context, s keys.Spec) (*keys.Key, error)
	Delete(ctx context.Context, id string) error
	List(ctx context.Context) ([]keys.Key, error)
	Grant(ctx context.Context, ttl time.Duration) (*keys.Token, error)
}

var (
	// ErrRateLimited: Acquire was denied by the per-user rate limit or a
	// lease cap. The error is a *DeniedError that says when to retry.
	ErrRateLimited = errors.New("lease: rate limited")
	// ErrClosed: the Manager is closed.
	ErrClosed = errors.New("lease: manager closed")
)

// DeniedError is returned by Acquire when a limit refuses it; it matches
// [ErrRateLimited] under errors.Is.
//
// A plain value: safe to copy and to read from several goroutines; nothing
// in it changes after it is returned.
type DeniedError struct {
	User string
	// Limit names the limit: "rate", "per-user cap" or "total cap".
	Limit string
	// RetryAfter is how long to wait before trying again: for the rate
	// limit, until a token is available; for caps, the lease TTL, an upper
	// bound on when a blocking lease ends by itself (one may end sooner).
	RetryAfter time.Duration
}

// Error says which limit refused which user and when to retry.
func (e *DeniedError) Error() string {
	return fmt.Sprintf("lease: rate limited: user %q is over the %s; retry after %s", e.User, e.Limit, e.RetryAfter.Round(time.Millisecond))
}

// Is matches ErrRateLimited.
func (e *DeniedError) Is(target error) bool { return target == ErrRateLimited }

// Manager issues leases and guarantees their deletion. It is safe for
// concurrent use. Close it when done: Close deletes what is left and stops
// its background work.
type Manager struct {
	api    KeyService
	cfg    config
	id     string
	events *dispatcher
	del    *deleter

	mu      sync.Mutex
	closed  bool
	live    map[string]*record // by lease ID
	pending int                // Acquire calls between admission and result
	users   map[string]*userState
	stats   Stats
	// unconfirmed lists creates whose outcome is unknown (see Unconfirmed).
	unconfirmed []Unconfirmed
	creating    sync.WaitGroup // creates in flight
	ending      sync.WaitGroup // leases between record.end and their key's hand-off
	sweep       *sweeper
	// baseCtx bounds creates; cancelled when Close gives up waiting.
	baseCtx    context.Context
	baseCancel context.CancelFunc
	closeErr   error // set before closeDone is closed
	closeDone  chan struct{}
	userScan   int // users map size that triggers the next eviction scan

	leakMu  sync.Mutex
	leaks   []*record   // unreachable leases waiting to be ended
	leaking atomic.Bool // len(leaks) > 0, read without leakMu on every call
}

// queueLeak records a lease found unreachable; see record.leak.
func (m *Manager) queueLeak(r *record) {
	m.leakMu.Lock()
	m.leaks = append(m.leaks, r)
	m.leaking.Store(true)
	m.leakMu.Unlock()
}

// reapLeaks ends the leases found unreachable since the last call.
func (m *Manager) reapLeaks() {
	if !m.leaking.Load() {
		return // the common case, on Acquire's path: no lock taken
	}
	m.leakMu.Lock()
	leaks := m.leaks
	m.leaks = nil
	m.leaking.Store(false)
	m.leakMu.Unlock()
	for _, r := range leaks {
		r.end(ReasonLeaked)
	}
}

// userState is the per-user rate limiter, live count and counters.
type userState struct {
	limiter *rate.Limiter
	live    int // live + pending
	usage   Usage
	last    time.Time
}

// Usage counts one user's leases.
//
// A plain value: safe to copy and to read from several goroutines; nothing
// in it changes after it is returned.
type Usage struct {
	Acquired uint64
	Released uint64 // ended by any path, leaks included
	Denied   uint64
	Leaked   uint64
	Live     int
}

// Stats are the Manager's totals.
//
// A plain value: safe to copy and to read from several goroutines; nothing
// in it changes after it is returned.
type Stats struct {
	Usage
	// Errors counts failed creates.
	Errors uint64
	// Deleted counts keys deleted (or found already gone) by the deleter.
	Deleted uint64
	// DeletePending counts keys queued, being deleted or waiting to retry.
	DeletePending int
	// DeletePeak is the most keys ever pending deletion at once.
	DeletePeak int
	// DeleteFailed counts keys the deleter gave up on.
	DeleteFailed uint64
	// DeleteAttempts counts delete calls made.
	DeleteAttempts uint64
	// HookEventsDropped counts events dropped because hooks fell behind.
	HookEventsDropped uint64
}

// New returns a Manager that leases credentials through api (typically a
// *keys.Client whose API key has keys:write). It makes no network call.
// Call Sweep once at start-up to clean up after a crash.
func New(api KeyService, opts ...Option) (*Manager, error) {
	if api == nil {
		return nil, errors.New("lease: New needs a KeyService (e.g. a *keys.Client)")
	}
	if c, ok := api.(*keys.Client); ok && c == nil {
		return nil, errors.New("lease: New was given a nil *keys.Client")
	}
	cfg := defaultConfig()
	for _, o := range opts {
		if o == nil {
			return nil, errors.New("lease: nil Option")
		}
		if err := o.apply(&cfg); err != nil {
			return nil, err
		}
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m := &Manager{
		api:       api,
		cfg:       cfg,
		id:        newID(),
		events:    &dispatcher{hooks: cfg.hooks},
		live:      map[string]*record{},
		users:     map[string]*userState{},
		closeDone: make(chan struct{}),
		userScan:  1024,
	}
	m.baseCtx, m.baseCancel = context.WithCancel(context.Background())
	m.del = newDeleter(api, cfg.deleteConcurrency, cfg.deleteTimeout, m.events)
	if cfg.sweepInterval > 0 {
		m.sweep = newSweeper(m, cfg.sweepInterval)
	}
	return m, nil
}

// ID is the Manager's instance ID, written into every key's marker.
func (m *Manager) ID() string { return m.id }

const idLen = 16

// newID returns 16 random lowercase hex characters.
func newID() string {
	var b [idLen / 2]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Acquire issues a credential for user that lives the Manager's TTL, and
// returns its lease. Before any network call it checks user (non-empty, at
// most MaxUserLen bytes, valid UTF-8), the lease caps and the per-user rate
// limit; a refusal is a *DeniedError matching ErrRateLimited, fires
// OnDenied and creates nothing.
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
	m.reapLeaks()
	if err := checkUser(user); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("lease: acquire for user %q: %w", user, err)
	}
	us, err := m.admit(user)
	if err != nil {
		return nil, err
	}
	r := &record{
		m:       m,
		us:      us,
		leaseID: newID(),
		user:    user,
		done:    make(chan struct{}),
	}
	// admit counted this Acquire in m.creating; it is done only once
	// finishAcquire or orphan has handed any key to the deleter, so that
	// Close, which waits for m.creating before draining the deleter, never
	// misses a key.
	var createErr error
	if ctx.Done() == nil {
		createErr = m.issue(r)
	} else {
		var leftErr error
		if createErr, leftErr = m.issueOrLeave(ctx, r); leftErr != nil {
			return nil, leftErr
		}
	}
	l, err := m.finishAcquire(ctx, r, createErr)
	m.creating.Done()
	if err == nil && ctx.Err() != nil {
		// ctx ended as the result arrived: the lease, armed with the ended
		// ctx, is already ending; report ctx's error, never an ended lease.
		l.Release()
		return nil, fmt.Errorf("lease: acquire for user %q: %w", user, ctx.Err())
	}
	return l, err
}

// issueOrLeave runs the create in the background and waits for it or for
// ctx. It returns the create's result, or, when ctx ends first, ctx's
// error as leftErr: the create then finishes in the background, and orphan
// deletes any key it makes.
func (m *Manager) issueOrLeave(ctx context.Context, r *record) (createErr, leftErr error) {
	// Unbuffered: a send succeeds only into the caller's receive, so
	// exactly one side owns the result.
	result := make(chan error)
	go func() {
		err := m.issue(r)
		select {
		case result <- err: // the caller finishes the Acquire and calls m.creating.Done
		case <-ctx.Done():
			m.orphan(r, err)
			m.creating.Done()
		}
	}()
	select {
	case err := <-result:
		return err, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("lease: acquire for user %q: %w", r.user, ctx.Err())
	}
}

// admit applies the caps and the rate limit, reserves a slot and counts
// the Acquire in m.creating. It returns the user's state, which stays in
// m.users while the reservation (and then the lease) counts in its live.
func (m *Manager) admit(user string) (*userState, error) {
	now := time.Now()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, ErrClosed
	}
	us := m.users[user]
	if us == nil {
		m.evictUsersLocked(now)
		us = &userState{limiter: rate.NewLimiter(m.cfg.rateLimit, m.cfg.burst)}
		m.users[user] = us
	}
	us.last = now
	var denied *DeniedError
	switch {
	case len(m.live)+m.pending >= m.cfg.maxLeases:
		denied = &DeniedError{User: user, Limit: "total cap", RetryAfter: m.cfg.ttl}
	case us.live >= m.cfg.maxPerUser:
		denied = &DeniedError{User: user, Limit: "per-user cap", RetryAfter: m.cfg.ttl}
	default:
		res := us.limiter.ReserveN(now, 1)
		if delay := res.DelayFrom(now); delay > 0 { // always OK: rate > 0, burst >= 1
			res.CancelAt(now)
			denied = &DeniedError{User: user, Limit: "rate", RetryAfter: delay}
		}
	}
	if denied != nil {
		us.usage.Denied++
		m.stats.Denied++
		m.mu.Unlock()
		m.events.emit(Event{Kind: EventDenied, Time: now, User: user, Err: denied, RetryAfter: denied.RetryAfter})
		return nil, denied
	}
	us.live++
	m.pending++
	// Counted under m.mu, where Close sets m.closed: Close's wait for
	// creates in flight then sees every Acquire it did not refuse.
	m.creating.Add(1)
	m.mu.Unlock()
	return us, nil
}

// userRetention is how long an idle user's state (counters, limiter) is
// kept.
const userRetention = time.Hour

// evictUsersLocked forgets users with no live lease, a full rate-limit
// bucket and no activity for userRetention, once the map has doubled.
func (m *Manager) evictUsersLocked(now time.Time) {
	if len(m.users) < m.userScan {
		return
	}
	for u, us := range m.users {
		if us.live == 0 && now.Sub(us.last) > userRetention && us.limiter.TokensAt(now) >= float64(m.cfg.burst) {
			delete(m.users, u)
		}
	}
	m.userScan = max(1024, 2*len(m.users))
}

// issue creates the credential for r, bounded by the create timeout and by
// Close.
func (m *Manager) issue(r *record) error {
	ctx, cancel := context.WithTimeout(m.baseCtx, m.cfg.createTimeout)
	defer cancel()
	start := time.Now()
	if m.cfg.grant {
		tok, err := m.api.Grant(ctx, m.cfg.ttl)
		if err != nil {
			return err
		}
		if tok == nil || tok.Secret == "" {
			return errors.New("lease: grant returned no token")
		}
		r.keyID = "grant-" + r.leaseID
		r.secret = &tok.Secret
		r.serverExpires = tok.Expires
		r.expires = minTime(start.Add(m.cfg.ttl), tok.Expires)
		return nil
	}
	mk := Marker{Lease: r.leaseID, Manager: m.id, User: r.user}
	k, err := m.api.Create(ctx, keys.Spec{
		Comment: mk.comment(),
		Scopes:  m.cfg.scopes,
		Tags:    append(mk.tags(), m.cfg.tags...),
		TTL:     m.cfg.serverTTL,
	})
	if err != nil {
		return err
	}
	if k == nil || k.ID == "" {
		return errors.New("lease: create returned no key")
	}
	// From here on the key exists: an error still leaves r.keyID set,
	// so that the key is deleted.
	r.keyID = k.ID
	r.serverExpires = start.Add(m.cfg.serverTTL)
	if k.Expires.After(r.serverExpires) {
		r.serverExpires = k.Expires
	}
	if k.Secret == "" {
		return fmt.Errorf("lease: create returned key %s without its secret", k.ID)
	}
	r.secret = &k.Secret
	r.expires = start.Add(m.cfg.ttl)
	return nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// finishAcquire turns a create result into a live lease.
func (m *Manager) finishAcquire(ctx context.Context, r *record, err error) (*Lease, error) {
	now := time.Now()
	if err != nil {
		m.noteUnconfirmed(r, err)
		m.mu.Lock()
		m.unreserveLocked(r)
		m.stats.Errors++
		m.mu.Unlock()
		m.deleteKey(r) // a key that came without its secret
		err = fmt.Errorf("lease: acquire for user %q: %w", r.user, err)
		m.events.emit(Event{Kind: EventError, Time: now, Op: "create", User: r.user, LeaseID: r.leaseID, Err: err})
		return nil, err
	}
	m.mu.Lock()
	if m.closed {
		m.unreserveLocked(r)
		m.mu.Unlock()
		m.deleteKey(r)
		return nil, ErrClosed
	}
	m.pending--
	m.live[r.leaseID] = r
	m.stats.Acquired++
	r.us.usage.Acquired++
	r.us.usage.Live++
	m.mu.Unlock()
	l := &Lease{r: r}
	m.events.emit(Event{Kind: EventAcquire, Time: now, User: r.user, LeaseID: r.leaseID, KeyID: r.keyID, Expires: r.expires})
	r.arm(ctx, l)
	return l, nil
}

// orphan disposes of a create result whose caller has left.
func (m *Manager) orphan(r *record, err error) {
	if err != nil {
		m.noteUnconfirmed(r, err)
		m.events.emit(Event{Kind: EventError, Time: time.Now(), Op: "create", User: r.user, LeaseID: r.leaseID,
			Err: fmt.Errorf("lease: acquire for user %q (caller gone): %w", r.user, err)})
	}
	m.mu.Lock()
	m.unreserveLocked(r)
	m.mu.Unlock()
	m.deleteKey(r)
}

func (m *Manager) unreserveLocked(r *record) {
	m.pending--
	r.us.live--
}

// deleteKey hands r's key, if a key was created, to the deleter. A grant
// token cannot be deleted.
func (m *Manager) deleteKey(r *record) {
	if m.cfg.grant || r.keyID == "" {
		return
	}
	m.del.add(&job{keyID: r.keyID, leaseID: r.leaseID, user: r.user, serverExpires: r.serverExpires})
}

// ended is called once per lease by record.end.
func (m *Manager) ended(r *record, reason Reason) {
	now := time.Now()
	m.mu.Lock()
	delete(m.live, r.leaseID)
	m.stats.Released++
	if reason == ReasonLeaked {
		m.stats.Leaked++
	}
	us := r.us
	us.live--
	us.usage.Live--
	us.usage.Released++
	if reason == ReasonLeaked {
		us.usage.Leaked++
	}
	us.last = now
	m.mu.Unlock()
	m.deleteKey(r)
	e := Event{Kind: EventRelease, Time: now, User: r.user, LeaseID: r.leaseID, KeyID: r.keyID, Expires: r.expires, Reason: reason}
	m.events.emit(e)
	if reason == ReasonLeaked {
		e.Kind = EventLeak
		m.events.emit(e)
	}
}

// Release ends the live lease whose LeaseID is leaseID, as Lease.Release
// does, and reports whether there was one. It lets a handler release a
// lease it did not keep (see Lease.Detach), e.g. when a browser reports
// its stream open. Like Lease.Release it returns at once. Check that the
// caller owns the lease (Lease.User) before releasing on its behalf.
func (m *Manager) Release(leaseID string) bool {
	m.mu.Lock()
	r := m.live[leaseID]
	m.mu.Unlock()
	if r == nil {
		return false
	}
	r.end(ReasonReleased)
	return true
}

// Owner returns the user of the live lease leaseID, and whether it is live.
func (m *Manager) Owner(leaseID string) (user string, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.live[leaseID]; r != nil {
		return r.user, true
	}
	return "", false
}

// Stats returns the Manager's totals.
func (m *Manager) Stats() Stats {
	m.reapLeaks()
	m.mu.Lock()
	s := m.stats
	s.Live = len(m.live)
	m.mu.Unlock()
	m.del.addStats(&s)
	s.HookEventsDropped = m.events.droppedCount()
	return s
}

// Usage returns user's counters. Users idle for an hour with no live lease
// may be forgotten (their counters restart at zero); export counters
// through Hooks for long-term tracking.
func (m *Manager) Usage(user string) Usage {
	m.reapLeaks()
	m.mu.Lock()
	defer m.mu.Unlock()
	if us := m.users[user]; us != nil {
		return us.usage
	}
	return Usage{}
}

// Undeleted lists the keys the deleter gave up on so far (at most 10,000),
// sorted by key ID. Each expires on Deepgram's side; Sweep removes them.
func (m *Manager) Undeleted() []Undeleted { return m.del.undeleted() }

// Close refuses new Acquire calls with ErrClosed, stops periodic sweeping,
// ends every live lease, waits for creates in flight and for the deleter to
// delete every key, gives hooks up to 5 s to drain, and returns nil, or a
// *CloseError naming every key that could not be deleted (during Close or
// earlier, unless a later Sweep removed it) and every create Close cut off
// without an answer. When ctx ends first, Close stops waiting, cancels what
// is in flight and reports what is left. Close may be called
// more than once and concurrently: every call waits for the first to finish
// and returns its result, or its own context's error if that ends first.
//
// Do not call Close from a hook: hooks run on the goroutine Close waits
// for, so it would wait its full 5 s for hooks; call go m.Close(ctx).
func (m *Manager) Close(ctx context.Context) error {
	if ctx == nil {
		ctx = context.Background()
	}
	m.mu.Lock()
	first := !m.closed
	m.closed = true // Acquire is refused from now on
	m.mu.Unlock()
	if first {
		m.closeErr = m.close(ctx)
		close(m.closeDone)
		return m.closeErr
	}
	// A later call waits for the first, as long as its own ctx allows; once
	// the first has finished, every call returns its result.
	select {
	case <-m.closeDone:
		return m.closeErr
	default:
	}
	select {
	case <-m.closeDone:
		return m.closeErr
	case <-ctx.Done():
		return fmt.Errorf("lease: close: still closing: %w", ctx.Err())
	}
}

func (m *Manager) close(ctx context.Context) error {
	m.reapLeaks()
	m.mu.Lock()
	live := make([]*record, 0, len(m.live))
	for _, r := range m.live {
		live = append(live, r)
	}
	m.mu.Unlock()
	if m.sweep != nil {
		m.sweep.stop()
	}
	for _, r := range live {
		r.end(ReasonClosed)
	}
	// Leases that were already ending when the snapshot was taken hand
	// their keys to the deleter before it is drained.
	m.ending.Wait()
	created := make(chan struct{})
	go func() { m.creating.Wait(); close(created) }()
	select {
	case <-created:
	case <-ctx.Done():
		m.baseCancel()
		<-created
	}
	m.del.drain(ctx)
	m.baseCancel()
	// Hooks get what is left of ctx, and at most hookGrace: a stuck hook
	// must not hang Close(context.Background()).
	hctx, cancel := context.WithTimeout(ctx, hookGrace)
	_ = m.events.wait(hctx)
	cancel()
	undeleted := m.del.undeleted()
	unconfirmed := m.unconfirmedCreates()
	if len(undeleted) == 0 && len(unconfirmed) == 0 {
		return nil
	}
	return &CloseError{Undeleted: undeleted, Unconfirmed: unconfirmed, Total: m.del.outstanding(), Err: ctx.Err()}
}

// hookGrace bounds how long Close waits for hooks once the deleter is done.
const hookGrace = 5 * time.Second

// maxUnconfirmed bounds the creates of unknown outcome remembered for Close.
const maxUnconfirmed = 10000

// Unconfirmed is an Acquire whose create failed without an answer from
// Deepgram (Close cancelling it, a timeout, a lost connection) while Close
// was running: a key may have been created. If so it carries the lease ID
// in its marker, expires on Deepgram's side by itself, and Sweep removes its
// record. (Such failures before Close are reported to the caller of Acquire
// and through OnError.)
//
// A plain value: safe to copy and to read from several goroutines; nothing
// in it changes after it is returned.
type Unconfirmed struct {
	LeaseID string
	User    string
	Err     error
}

// noteUnconfirmed remembers a create whose outcome is unknown.
func (m *Manager) noteUnconfirmed(r *record, err error) {
	var apiErr *keys.APIError
	if m.cfg.grant || errors.As(err, &apiErr) {
		return // an answer came (nothing was created), or a token: nothing to delete
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed && len(m.unconfirmed) < maxUnconfirmed {
		m.unconfirmed = append(m.unconfirmed, Unconfirmed{LeaseID: r.leaseID, User: r.user, Err: err})
	}
}

func (m *Manager) unconfirmedCreates() []Unconfirmed {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Unconfirmed(nil), m.unconfirmed...)
}
