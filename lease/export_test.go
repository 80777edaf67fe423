package lease

// Test-only access to internals, for the black-box tests in lease_test.

// ManagerID is m's instance ID, written into every key's marker.
func ManagerID(m *Manager) string { return m.id }

// QueuedLeaks counts the leases the collector found unreachable that are
// not ended yet.
func QueuedLeaks(m *Manager) int {
	m.leakMu.Lock()
	defer m.leakMu.Unlock()
	return len(m.leaks)
}

// DeleteLimit is the deleter's current concurrency limit.
func DeleteLimit(m *Manager) int {
	m.del.mu.Lock()
	defer m.del.mu.Unlock()
	return m.del.limit
}
