package main

import (
	"sync"
	"time"

	"github.com/dglease/dglease/lease"
)

// endedRetention is how long an ended lease stays in the ledger, so that
// the page can still ask for its status.
const endedRetention = 5 * time.Minute

// ledger remembers which visitor holds which lease, so that only the
// visitor a credential was issued to can release it or see its status.
// A live lease is forgotten (its *Lease dropped) as soon as it ends,
// however it ends, through the Manager's OnRelease hook: no goroutine per
// lease. Ended leases are kept, without their *Lease, for endedRetention.
// Safe for concurrent use.
type ledger struct {
	mu         sync.Mutex
	byID       map[string]*handout
	endedOrder []endedLease // in the order they ended
}

// handout is one credential handed to a visitor.
type handout struct {
	visitor       string
	keyID         string
	grant         bool
	serverExpires time.Time
	// lease is the live lease; nil once it has ended.
	lease *lease.Lease
	// reason is how the lease ended; 0 while it is live.
	reason lease.Reason
}

type endedLease struct {
	id string
	at time.Time
}

func newLedger() *ledger {
	return &ledger{byID: map[string]*handout{}}
}

// add records a lease just issued.
func (lg *ledger) add(l *lease.Lease) {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	h := lg.byID[l.LeaseID()]
	if h == nil {
		h = &handout{lease: l}
		lg.byID[l.LeaseID()] = h
	} // else: it already ended (the hook ran first); keep it ended.
	h.visitor, h.keyID, h.grant, h.serverExpires = l.User(), l.ID(), l.GrantToken(), l.ServerExpires()
	lg.prune()
}

// end is the OnRelease hook: the lease has ended and its key is with
// the deleter.
func (lg *ledger) end(e lease.Event) {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	h := lg.byID[e.LeaseID]
	if h == nil { // ended before add ran
		h = &handout{visitor: e.User, keyID: e.KeyID}
		lg.byID[e.LeaseID] = h
	}
	h.lease, h.reason = nil, e.Reason
	lg.endedOrder = append(lg.endedOrder, endedLease{e.LeaseID, time.Now()})
	lg.prune()
}

// prune forgets leases that ended more than endedRetention ago.
func (lg *ledger) prune() {
	cutoff := time.Now().Add(-endedRetention)
	n := 0
	for n < len(lg.endedOrder) && lg.endedOrder[n].at.Before(cutoff) {
		delete(lg.byID, lg.endedOrder[n].id)
		n++
	}
	lg.endedOrder = lg.endedOrder[n:]
}

// lookup returns a copy of the lease id if visitor holds it.
func (lg *ledger) lookup(visitor, id string) (handout, bool) {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	h := lg.byID[id]
	if h == nil || visitor == "" || h.visitor != visitor {
		return handout{}, false
	}
	return *h, true
}

// live counts the live leases it holds.
func (lg *ledger) live() int {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	n := 0
	for _, h := range lg.byID {
		if h.lease != nil {
			n++
		}
	}
	return n
}
