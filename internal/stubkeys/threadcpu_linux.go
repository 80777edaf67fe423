package stubkeys

import (
	"time"

	"golang.org/x/sys/unix"
)

// ThreadCPUTime returns the CPU time the calling thread has used, and
// true. Called from a goroutine locked to its thread
// (runtime.LockOSThread) it is that goroutine's CPU time: the time it
// waited for a processor is not in it, the page faults and GC assists it
// caused are.
func ThreadCPUTime() (time.Duration, bool) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}
