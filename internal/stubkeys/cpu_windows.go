package stubkeys

import (
	"syscall"
	"time"
)

// CPUTime is the CPU time (user plus kernel) the process has used so far,
// on every core: unlike wall time it counts work on other goroutines, such
// as a Manager's deleter.
func CPUTime() time.Duration {
	var creation, exit, kernel, user syscall.Filetime
	if err := syscall.GetProcessTimes(must(syscall.GetCurrentProcess()), &creation, &exit, &kernel, &user); err != nil {
		panic(err)
	}
	// Filetimes count 100 ns units.
	return time.Duration(filetime(kernel)+filetime(user)) * 100
}

func filetime(f syscall.Filetime) int64 { return int64(f.HighDateTime)<<32 | int64(f.LowDateTime) }

func must(h syscall.Handle, err error) syscall.Handle {
	if err != nil {
		panic(err)
	}
	return h
}
