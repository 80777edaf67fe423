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
// visitor a credential was issued to can release it or see its status, and
// what became of each lease, for the status endpoint. It holds no *Lease:
// leases are detached when issued and released by ID through the Manager,
// which also says whether a lease is still live. The Manager's hooks tell
// it how a lease ended (OnRelease) and whether its key could not be deleted
// (a final OnError). Ended leases are kept for endedRetention. Safe for
// concurrent use.
type ledger struct {
	mu         sync.Mutex
	byID       map[string]*handout
	endedOrder []endedLease // in the order they ended
}

// handout is one credential handed to a visitor.
type handout struct {
	visitor       string
	keyID         string
	serverExpires time.Time
	// reason is how the lease ended, once the OnRelease hook has said so.
	reason lease.Reason
	// deleteFailed: the deleter gave up on the key.
	deleteFailed bool
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
	h := lg.entry(l.ID())
	h.visitor, h.keyID, h.serverExpires = l.User(), l.KeyID(), l.ServerExpires()
	lg.prune()
}

// entry returns the handout for id, creating it: a lease may end, and its
// OnRelease hook run, between Acquire and add (a Close, say).
func (lg *ledger) entry(id string) *handout {
	h := lg.byID[id]
	if h == nil {
		h = &handout{}
		lg.byID[id] = h
	}
	return h
}

// hooks are the Manager hooks that keep the ledger up to date.
func (lg *ledger) hooks() lease.Hooks {
	return lease.Hooks{
		OnRelease: func(e lease.Event) {
			lg.mu.Lock()
			defer lg.mu.Unlock()
			h := lg.entry(e.LeaseID)
			h.visitor, h.keyID, h.reason = e.User, e.KeyID, e.Reason
			lg.endedOrder = append(lg.endedOrder, endedLease{e.LeaseID, time.Now()})
			lg.prune()
		},
		OnError: func(e lease.Event) {
			if e.Op != "delete" || !e.Final {
				return
			}
			lg.mu.Lock()
			defer lg.mu.Unlock()
			if h := lg.byID[e.LeaseID]; h != nil {
				h.deleteFailed = true
			}
		},
	}
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
