package lease

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dglease/dglease/keys"
)

// Backoff of the deleter's retries: full jitter in [d/2, d] where d doubles
// from backoffBase up to backoffMax; a Retry-After answer waits at least
// that long. No wait runs past the key's server-side expiry: a retry that
// would come later is given up at once, since the key stops working then.
const (
	backoffBase = 250 * time.Millisecond
	backoffMax  = 30 * time.Second
)

// maxFailures bounds the undeleted keys the deleter remembers for Close.
const maxFailures = 10000

// job is one key to delete.
type job struct {
	keyID         string
	leaseID       string
	user          string
	serverExpires time.Time // after this, the key no longer authenticates
	attempt       int
	latency       time.Duration // of the last attempt
	gen           uint64        // the Flush generation it was added in
	retry         *time.Timer   // set while waiting to be retried; guarded by deleter.mu
	// settled: deleted or given up, its hooks running; finished (removed
	// from inflight) once they return. Guarded by deleter.mu.
	settled bool
}

// event is the OnError event for a failed delete of j.
func (j *job) event(err error, final bool) Event {
	return Event{Time: time.Now(), Op: "delete", User: j.user, LeaseID: j.leaseID, KeyID: j.keyID, Err: err, Attempt: j.attempt, Final: final, Latency: j.latency}
}

// Undeleted is a key the Manager could not delete.
type Undeleted struct {
	KeyID   string
	LeaseID string
	User    string
	// Expires is when the key stops working on Deepgram's side; Sweep
	// removes its record after that.
	Expires time.Time
	// Err is the last failure, or the context error when Close gave up.
	Err error
}

// Adaptive concurrency. The deleter runs up to limit deletes at once, and
// limit moves between 1 and the bound the user set (WithDeleteConcurrency),
// as TCP's window does: it starts at initialConcurrency, grows by one with
// each delete that succeeds while others wait (so it doubles every round
// trip while the queue is not keeping up), and halves, at most once per
// cutInterval, when a delete fails in a way that may mean overload (429,
// 5xx, a timeout or transport error); each failed key also waits its own
// backoff, at least its answer's Retry-After. So deletion keeps pace with
// a storm of Releases when Deepgram keeps up, and backs off when it does
// not.
const (
	initialConcurrency = 16
	cutInterval        = 250 * time.Millisecond
)

// deleter deletes keys with adaptive, bounded concurrency and retries. Its
// worker goroutines exist only while jobs are queued; jobs waiting to be
// retried wait on timers, not goroutines.
type deleter struct {
	api        KeyService
	bound      int // the most deletes at once, set by the user
	timeout    time.Duration
	hooks      *hookSet
	baseCtx    context.Context
	baseCancel context.CancelFunc

	mu      sync.Mutex
	queue   []*job
	workers int
	limit   int       // deletes allowed at once now, 1..bound
	lastCut time.Time // when limit was last halved
	// size is len(inflight), readable without mu (Acquire's back-pressure).
	size atomic.Int64
	// working holds the expiries of keys given up on that still work on
	// Deepgram's side (a min-heap), so that WithMaxKeys counts them until
	// then; nWorking is its length, readable without mu.
	working   expiryHeap
	nWorking  atomic.Int64
	inflight  map[string]*job // by key ID: queued, running or waiting
	failures  []Undeleted
	failTotal uint64 // every key given up on (Stats.DeleteFailed)
	overflow  int    // failures not kept in failures (past maxFailures)
	deleted   uint64
	gone      uint64 // found already deleted (Stats.AlreadyDeleted)
	attempts  uint64
	peak      int
	stopped   bool
	wg        sync.WaitGroup // running workers
	// Flush: every job carries the generation it was added in; pending
	// counts unfinished jobs by generation, and each flush waits until
	// none of its generation or older is left.
	gen     uint64
	pending map[uint64]int
	flushes []flushWait
}

type flushWait struct {
	gen  uint64
	done chan struct{}
}

func newDeleter(api KeyService, bound int, timeout time.Duration, hooks *hookSet) *deleter {
	ctx, cancel := context.WithCancel(context.Background())
	return &deleter{
		api: api, bound: bound, limit: min(initialConcurrency, bound), timeout: timeout, hooks: hooks,
		baseCtx: ctx, baseCancel: cancel,
		inflight: map[string]*job{},
		pending:  map[uint64]int{},
	}
}

// add queues the deletion of a key. A key already queued is not queued
// twice: every key gets at most one successful delete from this deleter.
// With gen set, the job counts in that reserved Flush generation (see
// reserve) instead of the current one.
func (d *deleter) add(j *job, gen *uint64) {
	d.mu.Lock()
	if d.stopped {
		err := errors.New("lease: manager closed before the key could be deleted")
		d.recordLocked(j, err)
		d.mu.Unlock()
		d.hooks.run(d.hooks.errs, j.event(err, true))
		return
	}
	defer d.mu.Unlock()
	if _, dup := d.inflight[j.keyID]; dup {
		return
	}
	j.gen = d.gen
	if gen != nil {
		j.gen = *gen
	}
	d.pending[j.gen]++
	d.inflight[j.keyID] = j
	d.size.Store(int64(len(d.inflight)))
	d.peak = max(d.peak, len(d.inflight))
	d.pushLocked(j)
}

// pushLocked queues j and starts a worker if there is room for one. The
// deleter is not stopped: add and the retry timers check that first.
func (d *deleter) pushLocked(j *job) {
	d.queue = append(d.queue, j)
	d.startWorkersLocked()
}

// startWorkersLocked starts workers up to the current limit and the queue's
// length, unless attempts are paused.
func (d *deleter) startWorkersLocked() {
	if d.stopped {
		return
	}
	for d.workers < d.limit && d.workers < len(d.queue) {
		d.workers++
		d.wg.Add(1)
		go d.work()
	}
}

// work runs queued jobs until none is left. If a hook it runs ends the
// goroutine (runtime.Goexit), the deferred call replaces it: the job in
// hand was settled before the hook ran, and the queue is not left without
// a worker.
func (d *deleter) work() {
	normal := false
	defer func() {
		if normal {
			return
		}
		d.mu.Lock()
		d.workers--
		if len(d.queue) > 0 && !d.stopped {
			d.workers++
			d.wg.Add(1)
			go d.work()
		}
		d.mu.Unlock()
		d.wg.Done()
	}()
	for {
		d.mu.Lock()
		// A worker beyond the limit (after a cut) ends; the limit's growth
		// starts workers again.
		if len(d.queue) == 0 || d.stopped || d.workers > d.limit {
			d.workers--
			d.mu.Unlock()
			normal = true
			d.wg.Done()
			return
		}
		j := d.queue[0]
		d.queue[0] = nil
		d.queue = d.queue[1:]
		now := time.Now()
		if !now.Before(j.serverExpires) {
			// It waited past its expiry (a pause, a long queue): it no
			// longer works on Deepgram's side; no call needed.
			d.mu.Unlock()
			d.fail(j, errors.New("lease: gave up deleting: the key expired on Deepgram's side while it waited to be deleted, so it no longer works; Sweep removes its record"))
			continue
		}
		d.attempts++
		j.attempt++
		d.mu.Unlock()
		d.attempt(j, now)
	}
}

// adaptLocked moves the concurrency limit after an attempt: up on success
// while jobs wait, down on a failure that may mean overload.
func (d *deleter) adaptLocked(err error, now time.Time) {
	if err == nil {
		if len(d.queue) > 0 && d.limit < d.bound {
			d.limit++
			d.startWorkersLocked()
		}
		return
	}
	var apiErr *keys.APIError
	if errors.As(err, &apiErr) && !apiErr.Temporary() {
		return // a refusal (401, 403, 404...): says nothing about load
	}
	if now.Sub(d.lastCut) >= cutInterval {
		d.limit = max(1, d.limit/2)
		d.lastCut = now
	}
}

// attempt makes one delete call, started at start, and decides what
// comes next. It reads the clock once, after the call.
func (d *deleter) attempt(j *job, start time.Time) {
	ctx, cancel := context.WithDeadline(d.baseCtx, start.Add(d.timeout))
	err := d.api.Delete(ctx, j.keyID)
	now := time.Now()
	j.latency = now.Sub(start)
	cancel()
	gone := errors.Is(err, keys.ErrNotFound)
	if gone {
		err = nil // already gone: as good as deleted
	}
	if err == nil {
		d.done(j, now, gone) // adapts the limit in the same critical section
		return
	}
	d.mu.Lock()
	d.adaptLocked(err, now)
	d.mu.Unlock()
	if !retryable(err) {
		d.fail(j, err)
		return
	}
	wait := backoff(j.attempt)
	var apiErr *keys.APIError
	if errors.As(err, &apiErr) && apiErr.RetryAfter > wait {
		wait = apiErr.RetryAfter
	}
	if next := now.Add(wait); !next.Before(j.serverExpires) {
		d.fail(j, fmt.Errorf("lease: gave up deleting: the next attempt (in %s) would come after the key expires on Deepgram's side at %s; it stops working then, and Sweep removes its record: %w",
			wait.Round(time.Millisecond), j.serverExpires.UTC().Format(time.RFC3339), err))
		return
	}
	d.mu.Lock()
	if d.stopped || d.inflight[j.keyID] != j {
		// Close gave up on the key while this attempt ran, and reported it.
		d.mu.Unlock()
		return
	}
	var t *time.Timer
	t = time.AfterFunc(wait, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if j.retry != t {
			return // stop cancelled the retry
		}
		j.retry = nil
		d.pushLocked(j)
	})
	j.retry = t
	d.mu.Unlock()
	d.hooks.run(d.hooks.errs, j.event(err, false))
}

// retryable reports whether a delete failure may succeed later: rate
// limits, server errors, timeouts and transport errors, but not refusals
// (401, 403) or other client errors.
func retryable(err error) bool {
	var apiErr *keys.APIError
	if errors.As(err, &apiErr) {
		return apiErr.Temporary() || apiErr.StatusCode == http.StatusConflict
	}
	return true
}

// backoff returns the jittered wait before retry n (n >= 1).
func backoff(n int) time.Duration {
	d := backoffBase
	for i := 1; i < n && d < backoffMax; i++ {
		d *= 2
	}
	d = min(d, backoffMax)
	return d/2 + rand.N(d/2+1)
}

// done settles j, deleted (or, with gone, found already deleted). Its
// OnDelete hooks run before j is finished, so that a Flush that waits for
// j also waits for them; the deferred finish runs even if a hook ends the
// goroutine.
func (d *deleter) done(j *job, now time.Time, gone bool) {
	d.mu.Lock()
	d.adaptLocked(nil, now)
	if gone {
		d.gone++
	} else {
		d.deleted++
	}
	late := d.inflight[j.keyID] != j
	if late {
		// Close gave up on the key while this attempt ran, which then
		// succeeded: it is no longer undeleted.
		d.forgetLocked(map[string]bool{j.keyID: true})
	} else {
		j.settled = true
	}
	d.mu.Unlock()
	if !late {
		defer d.finish(j)
	}
	d.hooks.run(d.hooks.deleted, Event{Time: now, User: j.user, LeaseID: j.leaseID, KeyID: j.keyID, Attempt: j.attempt, Latency: j.latency, AlreadyDeleted: gone})
}

// fail gives up on j for good. As in done, its final OnError hooks run
// before j is finished.
func (d *deleter) fail(j *job, err error) {
	d.mu.Lock()
	if d.inflight[j.keyID] != j {
		d.mu.Unlock()
		return // Close gave up on it first, and reported it
	}
	d.recordLocked(j, err)
	j.settled = true
	d.mu.Unlock()
	defer d.finish(j)
	d.hooks.run(d.hooks.errs, j.event(err, true))
}

func (d *deleter) finish(j *job) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.finishLocked(j)
}

func (d *deleter) recordLocked(j *job, err error) {
	if j.serverExpires.After(time.Now()) {
		heap.Push(&d.working, expiring{keyID: j.keyID, at: j.serverExpires})
		d.nWorking.Store(int64(d.working.Len()))
	}
	d.failTotal++
	if len(d.failures) < maxFailures {
		d.failures = append(d.failures, Undeleted{KeyID: j.keyID, LeaseID: j.leaseID, User: j.user, Expires: j.serverExpires, Err: err})
	} else {
		d.overflow++
	}
}

// finishLocked removes j, whose deletion is over, and wakes the flushes
// that were waiting for it.
func (d *deleter) finishLocked(j *job) {
	delete(d.inflight, j.keyID)
	d.size.Store(int64(len(d.inflight)))
	d.donePendingLocked(j.gen)
}

// donePendingLocked counts one job (or reservation) of generation gen done
// and wakes the flushes it was the last of.
func (d *deleter) donePendingLocked(gen uint64) {
	if d.pending[gen]--; d.pending[gen] == 0 {
		delete(d.pending, gen)
	}
	kept := d.flushes[:0]
	for _, f := range d.flushes {
		if d.flushedLocked(f.gen) {
			close(f.done)
		} else {
			kept = append(kept, f)
		}
	}
	clear(d.flushes[len(kept):])
	d.flushes = kept
}

// flushedLocked reports whether no job of generation gen or older is left.
func (d *deleter) flushedLocked(gen uint64) bool {
	for g := range d.pending {
		if g <= gen {
			return false
		}
	}
	return true
}

// reserve counts a job that may be added later in the current Flush
// generation, so that a Flush started from now on waits for it; unreserve
// ends the reservation, once the job (if any) was added with that
// generation.
func (d *deleter) reserve() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pending[d.gen]++
	return d.gen
}

func (d *deleter) unreserve(gen uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.donePendingLocked(gen)
}

// flush returns a channel closed once every job added so far is done.
func (d *deleter) flush() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	gen := d.gen
	d.gen++
	done := make(chan struct{})
	if d.flushedLocked(gen) {
		close(done)
		return done
	}
	d.flushes = append(d.flushes, flushWait{gen: gen, done: done})
	return done
}

// isPending reports whether the key is queued, being deleted or waiting.
func (d *deleter) isPending(keyID string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.inflight[keyID]
	return ok
}

// count reports how many keys are pending deletion.
func (d *deleter) count() int { return int(d.size.Load()) }

// stillWorking counts the keys given up on that still work at now.
func (d *deleter) stillWorking(now time.Time) int {
	if d.nWorking.Load() == 0 {
		return 0 // the common case: no lock
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for d.working.Len() > 0 && !d.working[0].at.After(now) {
		heap.Pop(&d.working)
	}
	d.nWorking.Store(int64(d.working.Len()))
	return d.working.Len()
}

// drain waits until every job is done or ctx ends, then stops the
// deleter. Once ctx has ended it waits for nothing: what is left is
// recorded as given up.
func (d *deleter) drain(ctx context.Context) {
	done := d.flush()
	select {
	case <-done:
	case <-ctx.Done():
	}
	d.stop(ctx.Err())
	// Workers end quickly once the queue is empty and their calls are
	// cancelled; wait for them as long as ctx allows, so that after Close
	// the KeyService is no longer called.
	waitCtx(ctx, &d.wg)
}

// stop ends the deleter for good: retries and running calls are
// cancelled, and every key not deleted is recorded as given up, with a
// final OnError each.
func (d *deleter) stop(cause error) {
	if cause == nil {
		cause = errors.New("lease: manager closed")
	}
	err := fmt.Errorf("lease: Close gave up deleting: %w", cause)
	d.mu.Lock()
	d.stopped = true
	var gaveUp []*job
	for _, j := range d.inflight {
		if j.settled {
			continue // deleted or given up already; its own finish removes it
		}
		if j.retry != nil {
			j.retry.Stop()
			j.retry = nil
		}
		gaveUp = append(gaveUp, j)
	}
	sort.Slice(gaveUp, func(a, b int) bool { return gaveUp[a].keyID < gaveUp[b].keyID })
	for _, j := range gaveUp {
		d.recordLocked(j, err)
		d.finishLocked(j)
	}
	d.queue = nil
	d.mu.Unlock()
	d.baseCancel()
	// As for every key the deleter gives up on, a final OnError: hooks
	// (e.g. LogHooks) see these keys too, not only Close's caller.
	each(gaveUp, func(j *job) {
		// No attempt to report (Attempt 0): Close gave up. A worker may
		// still be running one, so read none of the fields it writes.
		d.hooks.run(d.hooks.errs, Event{Time: time.Now(), Op: "delete", User: j.user, LeaseID: j.leaseID, KeyID: j.keyID, Err: err, Final: true})
	})
}

// addStats fills the deleter's part of s.
func (d *deleter) addStats(s *Stats) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s.Deleted = d.deleted
	s.AlreadyDeleted = d.gone
	s.DeletePending = len(d.inflight)
	s.DeletePeak = d.peak
	s.DeleteFailed = d.failTotal
	s.DeleteAttempts = d.attempts
}

// outstanding counts the keys given up on and not since removed by Sweep,
// also past the first maxFailures.
func (d *deleter) outstanding() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.failures) + d.overflow
}

// forget drops keys from the failures, e.g. once Sweep deleted them.
func (d *deleter) forget(ids map[string]bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.forgetLocked(ids)
}

func (d *deleter) forgetLocked(ids map[string]bool) {
	kept := d.failures[:0]
	for _, u := range d.failures {
		if !ids[u.KeyID] {
			kept = append(kept, u)
		}
	}
	clear(d.failures[len(kept):])
	d.failures = kept
}

func (d *deleter) undeleted() []Undeleted {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := append([]Undeleted(nil), d.failures...)
	sort.Slice(out, func(a, b int) bool { return out[a].KeyID < out[b].KeyID })
	return out
}
