package lease

// lru orders entries by their last use, the oldest at the back, so that
// idle entries are forgotten a few at a time as new ones arrive: no scan
// of a whole map under a lock, however many users there are. Not safe for
// concurrent use: its owner's lock guards it.
type lru[T any] struct {
	front, back *lruNode[T]
}

// lruNode is embedded in the entry it orders; v points back to it.
type lruNode[T any] struct {
	prev, next *lruNode[T]
	v          T
}

// touch puts n at the front, inserting it if it is not in the list.
func (l *lru[T]) touch(n *lruNode[T]) {
	if l.front == n {
		return
	}
	if n.prev != nil || n.next != nil || l.back == n {
		l.remove(n)
	}
	n.next = l.front
	if l.front != nil {
		l.front.prev = n
	}
	l.front = n
	if l.back == nil {
		l.back = n
	}
}

func (l *lru[T]) remove(n *lruNode[T]) {
	if n.prev != nil {
		n.prev.next = n.next
	} else {
		l.front = n.next
	}
	if n.next != nil {
		n.next.prev = n.prev
	} else {
		l.back = n.prev
	}
	n.prev, n.next = nil, nil
}

// evictBatch bounds the entries forgotten per new entry.
const evictBatch = 4

// evict looks at up to evictBatch entries from the back, the oldest: it
// stops at the first that is not old, forgets (with forget) those that may
// go, and moves the others to the front, so that one that must stay never
// hides the ones behind it.
func (l *lru[T]) evict(old, may func(T) bool, forget func(T)) {
	for range evictBatch {
		n := l.back
		if n == nil || !old(n.v) {
			return
		}
		if !may(n.v) {
			l.touch(n)
			continue
		}
		l.remove(n)
		forget(n.v)
	}
}
