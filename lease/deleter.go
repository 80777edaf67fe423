package lease

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dglease/dglease/keys"
)

// Backoff of the deleter's retries: full jitter in [d/2, d] where d doubles
// from backoffBase up to backoffMax; a Retry-After answer waits at least
// that long.
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
	retry         *time.Timer // set while waiting to be retried; guarded by deleter.mu
}

// event is the OnError event for a failed delete of j.
func (j *job) event(err error, final bool) Event {
	return Event{Kind: EventError, Time: time.Now(), Op: "delete", User: j.user, LeaseID: j.leaseID, KeyID: j.keyID, Err: err, Attempt: j.attempt, Final: final}
}

// Undeleted is a key the Manager could not delete.
//
// A plain value: safe to copy and to read from several goroutines; nothing
// in it changes after it is returned.
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

// deleter deletes keys with bounded concurrency and retries. Its worker
// goroutines exist only while jobs are queued; jobs waiting to be retried
// wait on timers, not goroutines.
type deleter struct {
	api        KeyService
	limit      int
	timeout    time.Duration
	events     *dispatcher
	baseCtx    context.Context
	baseCancel context.CancelFunc

	mu        sync.Mutex
	queue     []*job
	workers   int
	inflight  map[string]*job // by key ID: queued, running or waiting
	failures  []Undeleted
	failTotal uint64 // every key given up on (Stats.DeleteFailed)
	overflow  int    // failures not kept in failures (past maxFailures)
	deleted   uint64
	attempts  uint64
	peak      int
	idle      chan struct{} // closed when no job is left; nil when idle
	stopped   bool
	wg        sync.WaitGroup // running workers
}

func newDeleter(api KeyService, limit int, timeout time.Duration, events *dispatcher) *deleter {
	ctx, cancel := context.WithCancel(context.Background())
	return &deleter{
		api: api, limit: limit, timeout: timeout, events: events,
		baseCtx: ctx, baseCancel: cancel,
		inflight: map[string]*job{},
	}
}

// add queues the deletion of a key. A key already queued is not queued
// twice: every key gets at most one successful delete from this deleter.
func (d *deleter) add(j *job) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		err := errors.New("lease: manager closed before the key could be deleted")
		d.recordLocked(j, err)
		d.events.emit(j.event(err, true))
		return
	}
	if _, dup := d.inflight[j.keyID]; dup {
		return
	}
	if len(d.inflight) == 0 {
		d.idle = make(chan struct{})
	}
	d.inflight[j.keyID] = j
	d.peak = max(d.peak, len(d.inflight))
	d.pushLocked(j)
}

// pushLocked queues j and starts a worker if there is room for one. The
// deleter is not stopped: add and the retry timers check that first.
func (d *deleter) pushLocked(j *job) {
	d.queue = append(d.queue, j)
	if d.workers < d.limit {
		d.workers++
		d.wg.Add(1)
		go d.work()
	}
}

func (d *deleter) work() {
	for {
		d.mu.Lock()
		if len(d.queue) == 0 || d.stopped {
			d.workers--
			d.mu.Unlock()
			d.wg.Done()
			return
		}
		j := d.queue[0]
		d.queue[0] = nil
		d.queue = d.queue[1:]
		d.attempts++
		d.mu.Unlock()
		d.attempt(j)
	}
}

// attempt makes one delete call and decides what comes next.
func (d *deleter) attempt(j *job) {
	j.attempt++
	ctx, cancel := context.WithTimeout(d.baseCtx, d.timeout)
	err := d.api.Delete(ctx, j.keyID)
	cancel()
	if err == nil || errors.Is(err, keys.ErrNotFound) {
		d.done(j)
		return
	}
	if !retryable(err) {
		d.fail(j, err)
		return
	}
	now := time.Now()
	if !now.Before(j.serverExpires) {
		d.fail(j, fmt.Errorf("lease: gave up deleting: the key has expired on Deepgram's side, so Sweep can remove its record: %w", err))
		return
	}
	wait := backoff(j.attempt)
	var apiErr *keys.APIError
	if errors.As(err, &apiErr) && apiErr.RetryAfter > wait {
		wait = apiErr.RetryAfter
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		// Close gave up while this attempt ran (stop cancelled its
		// context): final, like the failures stop records itself.
		err = fmt.Errorf("lease: Close gave up deleting: %w", err)
		d.events.emit(j.event(err, true))
		d.failLocked(j, err)
		return
	}
	d.events.emit(j.event(err, false))
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

func (d *deleter) done(j *job) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.deleted++
	d.finishLocked(j)
}

// fail gives up on j for good.
func (d *deleter) fail(j *job, err error) {
	d.events.emit(j.event(err, true))
	d.mu.Lock()
	defer d.mu.Unlock()
	d.failLocked(j, err)
}

func (d *deleter) failLocked(j *job, err error) {
	if d.inflight[j.keyID] != j {
		return
	}
	d.recordLocked(j, err)
	d.finishLocked(j)
}

func (d *deleter) recordLocked(j *job, err error) {
	d.failTotal++
	if len(d.failures) < maxFailures {
		d.failures = append(d.failures, Undeleted{KeyID: j.keyID, LeaseID: j.leaseID, User: j.user, Expires: j.serverExpires, Err: err})
	} else {
		d.overflow++
	}
}

func (d *deleter) finishLocked(j *job) {
	if d.inflight[j.keyID] != j {
		return
	}
	delete(d.inflight, j.keyID)
	if len(d.inflight) == 0 && d.idle != nil {
		close(d.idle)
		d.idle = nil
	}
}

// pending reports whether the key is queued, being deleted or waiting.
func (d *deleter) pending(keyID string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.inflight[keyID]
	return ok
}

// drain waits until every job is done or ctx ends. When ctx ends first it
// stops the deleter: retries are cancelled, running calls are cancelled,
// and every key not deleted is recorded as a failure.
func (d *deleter) drain(ctx context.Context) {
	d.mu.Lock()
	idle := d.idle
	d.mu.Unlock()
	if idle != nil {
		select {
		case <-idle:
		case <-ctx.Done():
		}
	}
	d.stop(ctx.Err())
}

// stop ends the deleter for good and waits for its workers to return.
func (d *deleter) stop(cause error) {
	if cause == nil {
		cause = errors.New("lease: manager closed")
	}
	d.mu.Lock()
	d.stopped = true
	left := make([]*job, 0, len(d.inflight))
	for _, j := range d.inflight {
		if j.retry != nil {
			j.retry.Stop()
			j.retry = nil
		}
		left = append(left, j)
	}
	d.queue = nil
	d.mu.Unlock()
	d.baseCancel()
	// Running attempts end quickly now that their context is cancelled.
	d.wg.Wait()
	err := fmt.Errorf("lease: Close gave up deleting: %w", cause)
	d.mu.Lock()
	var gaveUp []*job
	for _, j := range left {
		if d.inflight[j.keyID] == j {
			gaveUp = append(gaveUp, j)
			d.failLocked(j, err)
		}
	}
	d.mu.Unlock()
	// As for every key the deleter gives up on, a final OnError: hooks
	// (e.g. LogHooks) see these keys too, not only Close's caller.
	for _, j := range gaveUp {
		d.events.emit(j.event(err, true))
	}
}

// addStats fills the deleter's part of s.
func (d *deleter) addStats(s *Stats) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s.Deleted = d.deleted
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

// CloseError is returned by Close when keys could not be deleted. Each is
// named; each still expires on Deepgram's side at its Expires time, after
// which Sweep removes its record.
//
// A plain value: safe to copy and to read from several goroutines; nothing
// in it changes after it is returned.
type CloseError struct {
	// Undeleted names the keys not deleted (at most 10,000).
	Undeleted []Undeleted
	// Unconfirmed names the Acquire calls whose create got no answer: a
	// key may exist for each (see [Unconfirmed]).
	Unconfirmed []Unconfirmed
	// Total counts the keys the deleter gave up on and no Sweep has removed
	// since, also past the first 10,000 (which Undeleted lists). Keys past
	// the first 10,000 are not remembered, so a Sweep that deletes them
	// does not lower Total.
	Total int
	// Err is the context's error when Close's context ended first.
	Err error
}

// Error names every undeleted key (the first 20, then a count).
func (e *CloseError) Error() string {
	var b strings.Builder
	n := max(e.Total, len(e.Undeleted))
	switch {
	case n > 0 && len(e.Unconfirmed) > 0:
		fmt.Fprintf(&b, "lease: %d keys could not be deleted and %d creates got no answer (a key may exist for each; it expires by itself and Sweep removes it)", n, len(e.Unconfirmed))
	case n > 0:
		fmt.Fprintf(&b, "lease: %d keys could not be deleted", n)
	default:
		fmt.Fprintf(&b, "lease: %d creates got no answer (a key may exist for each; it expires by itself and Sweep removes it)", len(e.Unconfirmed))
	}
	if e.Err != nil {
		fmt.Fprintf(&b, " (%v)", e.Err)
	}
	for i, u := range e.Undeleted {
		if i == 20 {
			fmt.Fprintf(&b, "; and %d more", len(e.Undeleted)-i)
			break
		}
		fmt.Fprintf(&b, "; %s (user %q, expires %s): %v", u.KeyID, u.User, u.Expires.UTC().Format(time.RFC3339), u.Err)
	}
	for i, u := range e.Unconfirmed {
		if i == 20 {
			fmt.Fprintf(&b, "; and %d more creates", len(e.Unconfirmed)-i)
			break
		}
		fmt.Fprintf(&b, "; create for lease %s (user %q): %v", u.LeaseID, u.User, u.Err)
	}
	return b.String()
}

// Unwrap returns the context error, if any.
func (e *CloseError) Unwrap() error { return e.Err }
