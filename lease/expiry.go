package lease

import "time"

// expiries holds the live leases by expiry, earliest first, and one timer
// for the earliest: a lease's TTL needs no timer of its own. Leases mostly
// expire in the order they were acquired (the TTL is fixed per Manager),
// so an insertion steps back from the tail once or twice at most, and an
// end unlinks its lease in constant time. Guarded by Manager.mu; the timer
// is created by the first Acquire, so inside its testing/synctest bubble.
type expiries struct {
	list  dlist[record, *record]
	timer *time.Timer
	at    time.Time // what the timer is set for; zero when stopped
}

// insertExpiryLocked adds r, and sets the timer if r is now the earliest.
func (m *Manager) insertExpiryLocked(r *record) {
	at := m.exp.list.back
	for at != nil && at.expires.After(r.expires) {
		at = at.exp.prev
	}
	m.exp.list.insertAfter(at, r)
	if at == nil { // the earliest
		m.setExpiryTimerLocked()
	}
}

// removeExpiryLocked takes r out (it ended), if it is in; the timer, if
// set for r, fires for nothing and is set again then.
func (m *Manager) removeExpiryLocked(r *record) {
	if m.exp.list.contains(r) {
		m.exp.list.remove(r)
	}
}

// setExpiryTimerLocked sets the timer for the earliest lease, if it is
// not already set for then or earlier.
func (m *Manager) setExpiryTimerLocked() {
	e := &m.exp
	first := e.list.front
	if first == nil || m.closed {
		return
	}
	if !e.at.IsZero() && !e.at.After(first.expires) {
		return // it fires in time; expireDue sets it again after
	}
	e.at = first.expires
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
	for r := m.exp.list.front; r != nil && !r.expires.After(now); r = r.exp.next {
		due = append(due, r)
	}
	m.mu.Unlock()
	each(due, func(r *record) { r.end(ReasonExpired) })
}

// stopExpiryTimerLocked stops the timer for good; called by Close with
// m.mu held, once m.closed is set.
func (m *Manager) stopExpiryTimerLocked() {
	if m.exp.timer != nil {
		m.exp.timer.Stop()
	}
	m.exp.at = time.Time{}
}
