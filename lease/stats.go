package lease

// Usage counts one user's leases.
type Usage struct {
	Acquired uint64
	Released uint64 // ended by any path, leaks included
	Denied   uint64 // refused by a limit, the Manager's or Deepgram's
	Leaked   uint64
	Live     int
}

// Stats are the Manager's totals.
type Stats struct {
	Usage
	// Errors counts failed creates (refusals count in Denied).
	Errors uint64
	// Deleted counts keys the deleter deleted.
	Deleted uint64
	// AlreadyDeleted counts keys Deepgram answered were already gone when
	// the deleter came to delete them, e.g. released through another
	// replica (see Manager.ReleaseForeign). They are not in Deleted, so
	// that across replicas Deleted adds up to the keys deleted.
	AlreadyDeleted uint64
	// ForeignReleases counts keys of other Managers' leases this Manager
	// was asked to delete (Manager.ReleaseForeign).
	ForeignReleases uint64
	// DeletePending counts keys queued, being deleted or waiting to retry.
	DeletePending int
	// DeletePeak is the most keys ever pending deletion at once.
	DeletePeak int
	// DeleteFailed counts keys the deleter gave up on.
	DeleteFailed uint64
	// DeleteAttempts counts delete calls made.
	DeleteAttempts uint64
	// HookPanics counts hook calls that panicked (and were recovered).
	HookPanics uint64
}

// Stats returns the Manager's totals. It only reads.
func (m *Manager) Stats() Stats {
	m.mu.Lock()
	s := m.stats
	s.Live = len(m.live)
	m.mu.Unlock()
	m.del.addStats(&s)
	s.HookPanics = m.hooks.panics.Load()
	return s
}

// Usage returns user's counters. It only reads. Users idle for an hour
// with no live lease may be forgotten (their counters restart at zero);
// export counters through Hooks for long-term tracking.
func (m *Manager) Usage(user string) Usage {
	m.mu.Lock()
	defer m.mu.Unlock()
	if us := m.users[user]; us != nil {
		return us.usage
	}
	return Usage{}
}
