package lease

// lru orders entries by their last use, the oldest at the back, so that
// idle entries are forgotten a few at a time as new ones arrive: no scan
// of a whole map under a lock, however many users there are. Not safe for
// concurrent use: its owner's lock guards it.
type lru[E any, P linked[E]] struct {
	list dlist[E, P]
}

// touch puts e at the front, inserting it if it is not in the list.
func (l *lru[E, P]) touch(e *E) {
	if l.list.front == e {
		return
	}
	if l.list.contains(e) {
		l.list.remove(e)
	}
	l.list.insertAfter(nil, e)
}

// evictBatch bounds the entries forgotten per new entry.
const evictBatch = 4

// evict looks at up to evictBatch entries from the back, the oldest: it
// stops at the first that is not old, forgets (with forget) those that may
// go, and moves the others to the front, so that one that must stay never
// hides the ones behind it.
func (l *lru[E, P]) evict(old, may func(*E) bool, forget func(*E)) {
	for range evictBatch {
		e := l.list.back
		if e == nil || !old(e) {
			return
		}
		if !may(e) {
			l.touch(e)
			continue
		}
		l.list.remove(e)
		forget(e)
	}
}
