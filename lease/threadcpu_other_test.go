//go:build !linux

package lease_test

import "time"

// threadCPU reports false: this system's per-thread CPU clock is not read
// here, so benchmarks report wall-clock figures only.
func threadCPU() (time.Duration, bool) { return 0, false }
