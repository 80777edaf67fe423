//go:build unix

package stubkeys

import (
	"syscall"
	"time"
)

// CPUTime is the CPU time (user plus system) the process has used so far,
// on every core: unlike wall time it counts work on other goroutines, such
// as a Manager's deleter.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
