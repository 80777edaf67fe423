package lease

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// Flush waits until the key of every lease that ended before the call
// (and of every failed create that left one) is deleted or given up, or
// until ctx ends. It does not end live leases, and the Manager stays open.
// Deletion is asynchronous (Release returns at once): Flush is how a test
// waits for it before asserting on the fake, outside a synctest bubble:
//
//	l.Release()
//	if err := m.Flush(ctx); err != nil { ... }
//	// the key is now deleted on the fake (or listed by m.Undeleted)
//
// It returns nil, or ctx's error with how many deletions were still
// pending. Keys given up on are listed by [Manager.Undeleted] and reported
// through OnError. Safe for concurrent use.
func (m *Manager) Flush(ctx context.Context) error {
	if ctx == nil {
		return errors.New("lease: Flush needs a non-nil context")
	}
	done := m.del.flush()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("lease: flush: %d keys still pending deletion: %w", m.del.count(), ctx.Err())
	}
}

// Close refuses new Acquire calls with ErrClosed, stops periodic sweeping,
// ends every live lease, waits for creates in flight and for the deleter
// to delete every key, and returns nil, or a *CloseError naming every key
// that could not be deleted (during Close or earlier, unless a later Sweep
// removed it) and every create Close cut off without an answer.
//
// Close returns when ctx ends, whatever it is waiting for (a KeyService
// that ignores its context, a retry Deepgram asked to delay): it then
// cancels what is in flight and reports what is left in the *CloseError
// (whose Err is ctx's error). A create that answers after that has its key
// handed to the stopped deleter, which lists it in Undeleted and reports it
// through OnError. The deleter never waits past a key's expiry on
// Deepgram's side, so without a deadline Close waits at most for the
// longest-lived key's expiry (the TTL plus the expiry margin), plus one
// delete timeout for an attempt started just before it, the create
// timeout, and the time its hooks take.
//
// Close may be called more than once and concurrently: every call waits
// for the first to finish and returns its result, or its own context's
// error if that ends first. Do not call Close from a hook: the hooks of
// the leases it ends run on its goroutine, so it would wait for itself.
func (m *Manager) Close(ctx context.Context) error {
	if ctx == nil {
		ctx = context.Background()
	}
	m.mu.Lock()
	first := !m.closed
	m.closed = true // Acquire is refused from now on
	if first {
		m.stopLeakCheckLocked()
		m.stopExpiryTimerLocked()
	}
	m.mu.Unlock()
	if first {
		m.finishClose(ctx)
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

// finishClose runs close and publishes its result. close runs hooks (the
// OnRelease of the leases it ends, the final OnError of keys it gives up
// on); if one ends the goroutine (runtime.Goexit), the deferred call runs
// close again on a new goroutine, which finishes what is left (close is
// safe to run again), so that later Close calls, the deleter and Acquire's
// refusal are never left half-done.
func (m *Manager) finishClose(ctx context.Context) {
	finished := false
	defer func() {
		if !finished {
			go m.finishClose(ctx)
		}
	}()
	m.closeErr = m.close(ctx)
	finished = true
	close(m.closeDone)
}

func (m *Manager) close(ctx context.Context) error {
	m.reapLeaks()
	if m.sweep != nil {
		m.sweep.stop(ctx)
	}
	m.mu.Lock()
	live := make([]*record, 0, len(m.live))
	for _, r := range m.live {
		live = append(live, r)
	}
	m.mu.Unlock()
	each(live, func(r *record) { r.end(ReasonClosed) })
	// Leases that were already ending hand their keys to the deleter, and
	// creates in flight settle theirs, before it is drained.
	if !waitCtx(ctx, &m.ending) || !waitCtx(ctx, &m.creating) {
		m.baseCancel() // cut off the creates; their keys go to the stopped deleter
	}
	m.del.drain(ctx)
	m.baseCancel()
	// A limiter that sends its releases later (leaseredis) sends the last
	// ones now, so that a process that exits after Close leaves no slot
	// held until its deadline.
	if f, ok := m.limiter.(interface{ Flush(context.Context) error }); ok {
		_ = f.Flush(ctx)
	}
	// Unconfirmed creates first: one that settles between the two reads
	// is then named twice (as a create, and its key), never zero times.
	unconfirmed := m.unconfirmedCreates(ctx.Err())
	undeleted := m.del.undeleted()
	if len(undeleted) == 0 && len(unconfirmed) == 0 {
		return nil
	}
	return &CloseError{Undeleted: undeleted, Unconfirmed: unconfirmed, Total: m.del.outstanding(), Err: ctx.Err()}
}

// waitCtx waits for wg or ctx, and reports whether wg was done.
func waitCtx(ctx context.Context, wg *sync.WaitGroup) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

// maxUnconfirmed bounds the creates of unknown outcome remembered for Close.
const maxUnconfirmed = 10000

// Unconfirmed is an Acquire whose create got no answer from Deepgram while
// Close was running: Close cancelled it or gave up waiting for it, or it
// timed out or lost its connection. A key may have been created. If so it
// carries the lease ID in its marker, expires on Deepgram's side by itself,
// and Sweep removes its record. (Such failures before Close are reported
// to the caller of Acquire and through OnError.)
type Unconfirmed struct {
	LeaseID string
	User    string
	Err     error
}

// unconfirmedCreates lists the creates that failed without an answer
// during Close, then those still in flight (cut off by cause).
func (m *Manager) unconfirmedCreates(cause error) []Unconfirmed {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := append([]Unconfirmed(nil), m.unconfirmed...)
	if !m.cred.revocable() || len(m.creates) == 0 {
		return out
	}
	err := fmt.Errorf("lease: Close stopped waiting for the create: %w", cause)
	inflight := make([]Unconfirmed, 0, len(m.creates))
	for r := range m.creates {
		inflight = append(inflight, Unconfirmed{LeaseID: r.leaseID, User: r.us.name, Err: err})
	}
	sort.Slice(inflight, func(a, b int) bool { return inflight[a].LeaseID < inflight[b].LeaseID })
	return append(out, inflight...)
}

// CloseError is returned by Close when keys could not be deleted. Each is
// named; each still expires on Deepgram's side at its Expires time, after
// which Sweep removes its record.
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
