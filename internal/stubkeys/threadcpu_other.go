//go:build !linux

package stubkeys

import "time"

// ThreadCPUTime reports false: this system's per-thread CPU clock is not
// read here, so benchmarks report wall-clock figures only.
func ThreadCPUTime() (time.Duration, bool) { return 0, false }
