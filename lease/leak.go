package lease

import "time"

// Leak detection. runtime.AddCleanup on a lease's handle runs record.leak
// on the runtime's cleanup goroutine once every copy of the Lease is
// unreachable. That goroutine belongs to no testing/synctest bubble, and
// touching a bubble's timers or channels from outside it is a fatal error,
// so leak only marks the record and queues it. The lease is then ended on
// a goroutine that may touch them: the Manager's leak check, a timer that
// runs every leakCheckInterval while any lease is live (created by Acquire,
// so inside the caller's bubble), or Acquire and Close, or the lease's own
// TTL timer, whichever comes first.

// leakCheckInterval bounds how long a lease found unreachable waits to be
// ended when nothing else calls the Manager.
const leakCheckInterval = time.Second

// leak runs on the runtime's cleanup goroutine.
func (r *record) leak() {
	r.mu.Lock()
	if r.reason != 0 || r.leaked || r.detached {
		r.mu.Unlock()
		return
	}
	r.leaked = true
	r.mu.Unlock()
	m := r.us.m
	m.leakMu.Lock()
	m.leaks = append(m.leaks, r)
	m.leaking.Store(true)
	m.leakMu.Unlock()
}

// reapLeaks ends the leases found unreachable since the last call.
func (m *Manager) reapLeaks() {
	if !m.leaking.Load() {
		return // the common case, on Acquire's path: no lock taken
	}
	m.leakMu.Lock()
	leaks := m.leaks
	m.leaks = nil
	m.leaking.Store(false)
	m.leakMu.Unlock()
	each(leaks, func(r *record) { r.end(ReasonLeaked) })
}

// armLeakCheckLocked starts the leak check if it is not running; called
// with m.mu held when a lease becomes live.
func (m *Manager) armLeakCheckLocked() {
	if m.leakCheck == nil {
		m.leakCheck = time.AfterFunc(leakCheckInterval, m.checkLeaks)
	}
}

// checkLeaks is the leak check's timer function: it ends the leases found
// unreachable, and runs again while any lease is live.
func (m *Manager) checkLeaks() {
	defer m.rearmLeakCheck() // also when a hook of a leaked lease ends the goroutine
	m.reapLeaks()
}

func (m *Manager) rearmLeakCheck() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.live) > 0 && !m.closed {
		m.leakCheck.Reset(leakCheckInterval)
		return
	}
	m.leakCheck = nil
}

// stopLeakCheckLocked stops the leak check for good; called by Close with
// m.mu held, once m.closed is set.
func (m *Manager) stopLeakCheckLocked() {
	if m.leakCheck != nil {
		m.leakCheck.Stop()
		m.leakCheck = nil
	}
}
