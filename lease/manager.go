package lease

// Locks. Each guards bookkeeping only and is released before any other is
// taken. No hook and no KeyService call ever runs with a lock held:
//
//	Manager.mu      live leases, users, counters, closed, creates in flight
//	record.mu       one lease's ending (reason, context, detach, announce)
//	deleter.mu      the deleter's queue, jobs, counters and flushes
//	Manager.leakMu  leases found unreachable, waiting to be ended
//	localLimiter.mu the in-process limiter's buckets and slot counts
//
// A Limiter's Admit and release are called with no lock held.
//
// WaitGroups, and what waiting for each guarantees:
//
//	Manager.creating  every Acquire admitted so far has settled its key: the
//	                  lease is in live, or its key is with the deleter
//	Manager.ending    every lease whose end began, and every foreign release
//	                  accepted, has handed its key to the deleter
//	deleter.wg        no deleter goroutine is running a KeyService call
//
// Close waits for each only as long as its context allows.

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dglease/dglease/keys"
)

// ErrClosed is returned by Acquire and Sweep once Close has been called.
var ErrClosed = errors.New("lease: manager closed")

// ErrLimiterUnavailable is wrapped by the error Acquire returns when the
// Limiter could not decide (e.g. its Redis is down and it fails closed):
// no call was made to Deepgram, and a retry may succeed.
var ErrLimiterUnavailable = errors.New("the limiter is unavailable, so no credential was created")

// Manager issues leases and guarantees their deletion. It is safe for
// concurrent use. Close it when done: Close deletes what is left and stops
// its background work.
type Manager struct {
	api     KeyService
	cred    credential
	cfg     config
	limiter Limiter
	limits  Limits
	// hold bounds how long a slot is held (Admission.Hold).
	hold time.Duration
	// reportLimit is m.reportLimit, bound once.
	reportLimit func(error)
	id          string
	epoch       time.Time // New's time, which record.acquired counts from
	hooks       *hookSet
	del         *deleter

	mu     sync.Mutex
	closed bool
	live   map[uint64]*record // by idKey of the lease ID
	users  map[string]*userState
	stats  Stats
	// creates are the Acquire calls between admission and result, for
	// Close to name when it gives up on them.
	creates map[*record]struct{}
	// unconfirmed lists creates whose outcome is unknown (see Unconfirmed).
	unconfirmed []Unconfirmed
	creating    sync.WaitGroup
	ending      sync.WaitGroup
	sweep       *sweeper
	leakCheck   *time.Timer // non-nil while the leak check runs; see leak.go
	exp         expiries    // live leases by expiry, with one timer
	// baseCtx bounds creates; cancelled when Close gives up waiting.
	baseCtx    context.Context
	baseCancel context.CancelFunc
	closeErr   error // set before closeDone is closed
	closeDone  chan struct{}
	idle       lru[userState, *userState] // users by last activity, for forgetting idle ones
	foreign    releasedKeys               // keys ReleaseForeign took, until they expire

	leakMu  sync.Mutex
	leaks   []*record   // unreachable leases waiting to be ended
	leaking atomic.Bool // len(leaks) > 0, read without leakMu
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
		epoch:     time.Now(),
		hooks:     &hookSet{},
		live:      map[uint64]*record{},
		users:     map[string]*userState{},
		creates:   map[*record]struct{}{},
		closeDone: make(chan struct{}),
	}
	for _, h := range cfg.hooks {
		m.hooks.add(h)
	}
	if cfg.grant {
		m.cred = &grantTokens{api: api, ttl: cfg.ttl}
		m.hold = cfg.createTimeout + cfg.ttl
	} else {
		m.cred = &apiKeys{api: api, managerID: m.id, mgrTag: markerTag + ":mgr=" + m.id, scopes: cfg.scopes, tags: cfg.tags, serverTTL: cfg.serverTTL}
		m.hold = cfg.createTimeout + cfg.serverTTL
	}
	m.limiter = cfg.limiter
	if m.limiter == nil {
		m.limiter = NewLocalLimiter()
	}
	m.limits = Limits{Every: cfg.every, Burst: cfg.burst, MaxLeases: cfg.maxLeases, MaxPerUser: cfg.maxPerUser, TTL: cfg.ttl}
	m.reportLimit = m.reportLimitError
	m.baseCtx, m.baseCancel = context.WithCancel(context.Background())
	m.del = newDeleter(api, cfg.deleteConcurrency, cfg.deleteTimeout, m.hooks)
	if cfg.sweepInterval > 0 {
		m.sweep = newSweeper(m, cfg.sweepInterval)
	}
	return m, nil
}

const idLen = 16

// ids generates IDs: ChaCha8, a cryptographically strong generator,
// seeded once from crypto/rand, so that an ID costs no system call (a
// crypto/rand read per Acquire was a tenth of a lease's own CPU).
var ids = struct {
	sync.Mutex
	*mrand.ChaCha8
}{ChaCha8: mrand.NewChaCha8(seed())}

func seed() (s [32]byte) {
	_, _ = rand.Read(s[:]) // never fails on supported platforms (crypto/rand's doc)
	return s
}

// newID returns 16 random lowercase hex characters.
func newID() string {
	id, _ := newKeyedID()
	return id
}

// newKeyedID returns a new ID and the number it spells (idKey).
func newKeyedID() (string, uint64) {
	ids.Lock()
	v := ids.Uint64()
	ids.Unlock()
	var b [idLen / 2]byte
	binary.BigEndian.PutUint64(b[:], v)
	return hex.EncodeToString(b[:]), v
}

// Release ends the live lease whose ID is leaseID, as Lease.Release does,
// and reports whether there was one. It lets a handler release a lease it
// did not keep (see Lease.Detach), e.g. when a browser reports its stream
// open. Like Lease.Release it never waits on the network. Check that the
// caller owns the lease ([Manager.Owner]) before releasing on its behalf.
func (m *Manager) Release(leaseID string) bool {
	k, ok := idKey(leaseID)
	if !ok {
		return false
	}
	m.mu.Lock()
	r := m.live[k]
	m.mu.Unlock()
	if r == nil {
		return false
	}
	r.end(ReasonReleased)
	return true
}

// ID is the Manager's own random ID (16 lowercase hex characters), written
// into the marker of every key it creates. No two Managers share one, so
// it tells which Manager, replica or process issued a lease: a hand-off
// endpoint behind a load balancer (lease/leasehttp) puts it in its release
// handles to know whether a release reaches the replica holding the lease.
func (m *Manager) ID() string { return m.id }

// ForeignLease is a lease another Manager issued (on another replica or
// in another process), described as far as ReleaseForeign needs to delete
// its key. Its fields come from that Manager's Lease (ID, KeyID, the
// user, ServerExpires), carried e.g. in a signed release handle.
type ForeignLease struct {
	LeaseID string
	// KeyID is the Deepgram api_key_id to delete; required.
	KeyID string
	User  string
	// ServerExpires is when the key stops working on Deepgram's side: no
	// retry waits past it. Required.
	ServerExpires time.Time
}

// ReleaseForeign deletes the key of a lease that another Manager issued,
// e.g. when a browser reports its stream open to a replica other than
// the one that leased its credential. The key goes to this Manager's
// deleter, with its retries, hooks (OnDelete, OnError) and counters
// (Stats.ForeignReleases, Stats.Deleted), and counts against WithMaxKeys
// until deleted. The Manager that holds the lease is not told: when its
// lease ends (TTL, Release, Close), Deepgram answers that the key is gone,
// which it counts in Stats.AlreadyDeleted, with no error reported. A lease
// that is live in this Manager is simply released.
//
// Like Release it never waits on the network, and like it, it is
// idempotent: a key released through this Manager before is not deleted
// again (the Manager remembers it until its ServerExpires). It returns
// ErrClosed after Close, and an error when l names no key (a grant token
// cannot be deleted) or no expiry. A key whose ServerExpires has passed no
// longer works and is not deleted; ReleaseForeign returns nil. Check that
// the caller may release the lease first (e.g. by a signature, as
// lease/leasehttp does): any key the project's API key can delete would
// be deleted. Safe for concurrent use.
func (m *Manager) ReleaseForeign(l ForeignLease) error {
	if l.KeyID == "" {
		return errors.New("lease: ReleaseForeign needs the lease's KeyID (a grant token has none and cannot be deleted)")
	}
	if l.ServerExpires.IsZero() {
		return errors.New("lease: ReleaseForeign needs the lease's ServerExpires, which bounds the deleter's retries")
	}
	if m.Release(l.LeaseID) {
		return nil
	}
	now := time.Now()
	if !now.Before(l.ServerExpires) {
		return nil // it no longer works: nothing to delete
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	if !m.foreign.add(l.KeyID, l.ServerExpires, now) {
		m.mu.Unlock()
		return nil // released through this Manager before: one delete is enough
	}
	m.stats.ForeignReleases++
	// Close, once it has set m.closed, waits for m.ending before it drains
	// the deleter: the key is then handed over in time to be deleted.
	m.ending.Add(1)
	m.mu.Unlock()
	defer m.ending.Done()
	m.del.add(&job{keyID: l.KeyID, leaseID: l.LeaseID, user: l.User, serverExpires: l.ServerExpires}, nil)
	return nil
}

// Owner returns the user of the live lease leaseID, and whether it is live.
func (m *Manager) Owner(leaseID string) (user string, ok bool) {
	k, ok := idKey(leaseID)
	if !ok {
		return "", false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.live[k]; r != nil {
		return r.us.name, true
	}
	return "", false
}

// Undeleted lists the keys the deleter gave up on so far (at most 10,000),
// sorted by key ID. Each expires on Deepgram's side; Sweep removes them.
func (m *Manager) Undeleted() []Undeleted { return m.del.undeleted() }

// ended records that r ended and hands its key to the deleter; it returns
// the event for the hooks, which the caller runs.
func (m *Manager) ended(r *record, reason Reason) Event {
	now := time.Now()
	m.mu.Lock()
	delete(m.live, r.key)
	m.removeExpiryLocked(r)
	m.stats.Released++
	us := r.us
	us.live--
	us.usage.Live--
	us.usage.Released++
	if reason == ReasonLeaked {
		m.stats.Leaked++
		us.usage.Leaked++
	}
	us.last = now
	m.idle.touch(us)
	m.mu.Unlock()
	r.releaseSlot(true)
	m.deleteKey(r, nil)
	return Event{Time: now, User: r.us.name, LeaseID: r.leaseID, KeyID: r.keyID, Expires: r.expires, Reason: reason, Lifetime: now.Sub(m.epoch) - r.acquired}
}

// emitEnd runs the hooks of a lease's end.
func (m *Manager) emitEnd(e Event) {
	if e.Reason == ReasonLeaked {
		defer m.hooks.run(m.hooks.leak, e) // after OnRelease, even if one ends the goroutine
	}
	m.hooks.run(m.hooks.release, e)
}

// deleteKey hands r's key, if one was created, to the deleter; gen, if
// not nil, is the Flush generation reserved for it (see orphan).
func (m *Manager) deleteKey(r *record, gen *uint64) {
	if r.keyID == "" {
		return // no key was created, or a grant token: nothing to delete
	}
	m.del.add(&job{keyID: r.keyID, leaseID: r.leaseID, user: r.us.name, serverExpires: r.serverExpires}, gen)
}
