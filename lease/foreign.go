package lease

import (
	"container/heap"
	"time"
)

// releasedKeys remembers the keys ReleaseForeign handed to the deleter
// until they expire on Deepgram's side, so that a release repeated (a
// page retrying, a replayed handle) costs no second delete call. Its size
// is bounded by the foreign releases of one key lifetime: each add first
// forgets the keys that have expired. Guarded by Manager.mu.
type releasedKeys struct {
	ids map[string]struct{}
	exp expiryHeap
}

// add records keyID, which works until expires, and reports whether it
// was new.
func (k *releasedKeys) add(keyID string, expires, now time.Time) bool {
	for len(k.exp) > 0 && !now.Before(k.exp[0].at) {
		delete(k.ids, heap.Pop(&k.exp).(expiring).keyID)
	}
	if _, seen := k.ids[keyID]; seen {
		return false
	}
	if k.ids == nil {
		k.ids = map[string]struct{}{}
	}
	k.ids[keyID] = struct{}{}
	heap.Push(&k.exp, expiring{keyID, expires})
	return true
}

// expiring is a key and when it stops working on Deepgram's side.
type expiring struct {
	keyID string
	at    time.Time
}

// expiryHeap is a min-heap of keys by expiry (container/heap).
type expiryHeap []expiring

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiring)) }
func (h *expiryHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
