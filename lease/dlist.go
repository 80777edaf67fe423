package lease

// links is embedded in an element of a dlist: its neighbours in the list.
type links[E any] struct {
	prev, next *E
}

// linked is an element type of a dlist: a pointer to E that reaches the
// links embedded in E.
type linked[E any] interface {
	*E
	link() *links[E]
}

// dlist is an intrusive doubly linked list: the links live in the
// elements, so adding one allocates nothing and removing one takes
// constant time. The expiry list of live leases and the LRU of users are
// built on it. Not safe for concurrent use: its owner's lock guards it.
type dlist[E any, P linked[E]] struct {
	front, back *E
}

// contains reports whether e is in l (an element is in at most one list
// of its kind).
func (l *dlist[E, P]) contains(e *E) bool {
	return P(e).link().prev != nil || l.front == e
}

// insertAfter adds e after at, or at the front when at is nil.
func (l *dlist[E, P]) insertAfter(at, e *E) {
	n := P(e).link()
	if at == nil {
		n.prev, n.next = nil, l.front
		l.front = e
	} else {
		a := P(at).link()
		n.prev, n.next = at, a.next
		a.next = e
	}
	if n.next != nil {
		P(n.next).link().prev = e
	} else {
		l.back = e
	}
}

// remove takes e, which must be in l, out of it.
func (l *dlist[E, P]) remove(e *E) {
	n := P(e).link()
	if n.prev != nil {
		P(n.prev).link().next = n.next
	} else {
		l.front = n.next
	}
	if n.next != nil {
		P(n.next).link().prev = n.prev
	} else {
		l.back = n.prev
	}
	n.prev, n.next = nil, nil
}
