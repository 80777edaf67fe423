package main

import (
	"sync"
	"time"

	"github.com/dglease/dglease/lease"
)

// endedRetention is how long an ended lease stays in the ledger, so that
// the page can still ask for its status.
const endedRetention = 5 * time.Minute

// maxEnded bounds the ended leases the ledger keeps: past it, the oldest
// are forgotten before endedRetention. Live leases are bounded by the
// Manager (lease.WithMaxLeases).
const maxEnded = 10000

// ledger remembers which visitor holds which lease, so that only the
// visitor a credential was issued to can see its status, and what became
// of each lease. It is filled by the Manager's hooks alone: OnAcquire
// records a lease as leasehttp issues it, OnRelease how it ended, and a
// final delete OnError that its key could not be deleted. It holds no
// *Lease (the Manager says whether a lease is still live) and no secret.
// Safe for concurrent use.
type ledger struct {
	maxEnded int

	mu    sync.Mutex
	byID  map[string]*handout
	ended []endedLease // in the order they ended
}

// handout is one credential handed to a visitor.
type handout struct {
	visitor string
	keyID   string // "" for a grant token
	// expires is when the lease ends by itself; serverExpires when the
	// credential stops working on Deepgram's side.
	expires, serverExpires time.Time
	// reason is how the lease ended, once the OnRelease hook has said so.
	reason lease.Reason
	// deleteFailed: the deleter gave up on the key.
	deleteFailed bool
}

type endedLease struct {
	id string
	at time.Time
}

func newLedger(maxEnded int) *ledger {
	return &ledger{maxEnded: maxEnded, byID: map[string]*handout{}}
}

// hooks are the Manager hooks that keep the ledger up to date.
func (lg *ledger) hooks() lease.Hooks {
	return lease.Hooks{
		// OnAcquire returns before the same lease's OnRelease is called.
		OnAcquire: func(e lease.Event) {
			lg.mu.Lock()
			defer lg.mu.Unlock()
			lg.byID[e.LeaseID] = &handout{visitor: e.User, keyID: e.KeyID, expires: e.Expires, serverExpires: e.ServerExpires}
			lg.prune()
		},
		OnRelease: func(e lease.Event) {
			lg.mu.Lock()
			defer lg.mu.Unlock()
			h := lg.byID[e.LeaseID]
			if h == nil {
				return // pruned: it outlived maxEnded others
			}
			h.reason = e.Reason
			lg.ended = append(lg.ended, endedLease{e.LeaseID, time.Now()})
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

// prune forgets leases that ended more than endedRetention ago, and the
// oldest ended ones past maxEnded.
func (lg *ledger) prune() {
	cutoff := time.Now().Add(-endedRetention)
	n := 0
	for n < len(lg.ended) && (lg.ended[n].at.Before(cutoff) || len(lg.ended)-n > lg.maxEnded) {
		delete(lg.byID, lg.ended[n].id)
		n++
	}
	lg.ended = lg.ended[n:]
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
