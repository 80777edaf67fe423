package lease

import "time"

// expiries holds the live leases by expiry, earliest first, and one timer
// for the earliest: a lease's TTL needs no timer of its own. Leases mostly
// expire in the order they were acquired (the TTL is fixed per Manager),
// so an insertion steps back from the tail once or twice at most, and an
// end unlinks its lease in constant time. Guarded by Manager.mu; the timer
// is created by the first Acquire, so inside its testing/synctest bubble.
type expiries struct {
	head, tail *record
	timer      *time.Timer
	at         time.Time // what the timer is set for; zero when stopped
}

// insertLocked adds r, and sets the timer if r is now the earliest.
func (m *Manager) insertExpiryLocked(r *record) {
	e := &m.exp
	at := e.tail
	for at != nil && at.expires.After(r.expires) {
		at = at.prevExp
	}
	if at == nil { // the earliest
		r.nextExp = e.head
		if e.head != nil {
			e.head.prevExp = r
		}
		e.head = r
		if e.tail == nil {
			e.tail = r
		}
		m.setExpiryTimerLocked()
		return
	}
	r.prevExp, r.nextExp = at, at.nextExp
	if at.nextExp != nil {
		at.nextExp.prevExp = r
	} else {
		e.tail = r
	}
	at.nextExp = r
}

// removeExpiryLocked takes r out (it ended); the timer, if set for r,
// fires for nothing and is set again then.
func (m *Manager) removeExpiryLocked(r *record) {
	e := &m.exp
	if r.prevExp == nil && e.head != r {
		return // not in the list
	}
	if r.prevExp != nil {
		r.prevExp.nextExp = r.nextExp
	} else {
		e.head = r.nextExp
	}
	if r.nextExp != nil {
		r.nextExp.prevExp = r.prevExp
	} else {
		e.tail = r.prevExp
	}
	r.prevExp, r.nextExp = nil, nil
}

// setExpiryTimerLocked sets the timer for the earliest lease, if it is
// not already set for then or earlier.
func (m *Manager) setExpiryTimerLocked() {
	e := &m.exp
	if e.head == nil || m.closed {
		return
	}
	if !e.at.IsZero() && !e.at.After(e.head.expires) {
		return // it fires in time; expireDue sets it again after
	}
	e.at = e.head.expires
	if e.timer == nil {
		e.timer = time.AfterFunc(time.Until(e.at), m.expireDue)
		return
	}
	e.timer.Reset(time.Until(e.at))
}

// expireDue is the timer's function: it ends every lease whose TTL has
// passed, then sets the timer for the next.
func (m *Manager) expireDue() {
	defer func() { // also when a hook ends the goroutine
		m.mu.Lock()
		m.exp.at = time.Time{}
		m.setExpiryTimerLocked()
		m.mu.Unlock()
	}()
	now := time.Now()
	var due []*record
	m.mu.Lock()
	for r := m.exp.head; r != nil && !r.expires.After(now); r = r.nextExp {
		due = append(due, r)
	}
	m.mu.Unlock()
	each(due, (*record).expire)
}

// stopExpiryTimerLocked stops the timer for good; called by Close with
// m.mu held, once m.closed is set.
func (m *Manager) stopExpiryTimerLocked() {
	if m.exp.timer != nil {
		m.exp.timer.Stop()
	}
	m.exp.at = time.Time{}
}
