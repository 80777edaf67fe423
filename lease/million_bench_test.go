package lease_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/dglease/dglease/internal/stubkeys"
	"github.com/dglease/dglease/lease"
)

// These benchmarks hold a million leases; run them one at a time:
//
//	go test -run '^$' -bench 'Million' -benchtime 1x -timeout 30m ./lease/

// BenchmarkMillionLeases acquires 1,000,000 leases (1,000 users, TTL 1 h)
// against the instant stub, releases them in random order timing each
// Release (wall), then closes the Manager; twice in one process, since the
// runtime's state after the first Manager once made the second far
// slower. It reports the Release median and p99 and each Close.
func BenchmarkMillionLeases(b *testing.B) {
	const n = 1_000_000
	for range b.N {
		for round := 1; round <= 2; round++ {
			m, err := lease.New(&stub{}, lease.WithRateLimit(0, 1), lease.WithMaxLeases(n, n), lease.WithTTL(time.Hour), lease.WithHooks(noopHooks))
			if err != nil {
				b.Fatal(err)
			}
			ls := make([]*lease.Lease, n)
			for i := range ls {
				if ls[i], err = m.Acquire(context.Background(), fmt.Sprint("user-", i%1000)); err != nil {
					b.Fatal(err)
				}
			}
			rand.Shuffle(n, func(i, j int) { ls[i], ls[j] = ls[j], ls[i] })
			// Release half in random order, timed; Close ends the rest.
			times := make([]time.Duration, n/2)
			for i := range times {
				start := time.Now()
				ls[i].Release()
				times[i] = time.Since(start)
			}
			clear(ls)
			slices.Sort(times)
			start := time.Now()
			if err := m.Close(context.Background()); err != nil {
				b.Fatal(err)
			}
			closed := time.Since(start)
			b.ReportMetric(float64(times[len(times)/2].Nanoseconds()), fmt.Sprintf("release-median-ns-%d", round))
			b.ReportMetric(float64(times[len(times)*99/100].Nanoseconds()), fmt.Sprintf("release-p99-ns-%d", round))
			b.ReportMetric(closed.Seconds(), fmt.Sprintf("close-500k-s-%d", round))
			runtime.GC()
		}
	}
}

// BenchmarkMillionUsers has 1,000,000 distinct users each acquire and
// release once, timing every Acquire, so that a stall of the per-user
// state's upkeep shows in the tail: p99.99 and max. Each call is timed on
// two clocks: wall, and the CPU time of the timing goroutine's own thread
// (it is locked to it), which leaves out the time it waited for a
// processor while the runtime's GC workers held both.
//
// In the same run, after the Manager is gone, the floor: the same million
// names put into a bare Go map of 400-byte values (about what the library
// keeps per user, reported as heap-B/user), each insert timed the same
// way. It runs second, on a heap already grown, so it is the stricter of
// the two orders for the library. Its tail is what any per-user state of
// that size costs in this process; the max-vs-floor metrics are the ratios.
func BenchmarkMillionUsers(b *testing.B) {
	const n = 1_000_000
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for range b.N {
		// Grant tokens: no deletions, whose work on the other goroutines
		// would compete for the two cores and blur the upkeep measured here.
		m, err := lease.New(&stub{}, lease.WithGrantTokens(), lease.WithRateLimit(time.Second, 5), lease.WithMaxLeases(1000, 10), lease.WithHooks(noopHooks))
		if err != nil {
			b.Fatal(err)
		}
		acquire := timeUsers(n, func(user string) func() {
			l, err := m.Acquire(context.Background(), user)
			if err != nil {
				b.Fatal(err)
			}
			return l.Release
		}, func() { runtime.KeepAlive(m) })
		if err := m.Close(context.Background()); err != nil {
			b.Fatal(err)
		}
		m = nil
		users := map[string]*floorUser{}
		var last *floorUser
		floor := timeUsers(n, func(user string) func() {
			last = &floorUser{name: user, prev: last}
			users[user] = last
			return nil
		}, func() { runtime.KeepAlive(users) })
		acquire.report(b, "acquire")
		floor.report(b, "floor")
		b.ReportMetric(float64(acquire.wall[n-1])/float64(floor.wall[n-1]), "max-vs-floor")
		if acquire.cpuOK && floor.cpuOK {
			b.ReportMetric(float64(acquire.cpu[n-1])/float64(floor.cpu[n-1]), "cpu-max-vs-floor")
		}
	}
}

// floorUser is BenchmarkMillionUsers' bare per-user state: a name, the
// link an LRU needs, and padding to 400 bytes.
type floorUser struct {
	name string
	prev *floorUser
	_    [47]uint64 // padding
}

// userTimes are one op's timings, sorted, and the live heap it grew.
type userTimes struct {
	wall, cpu   []time.Duration
	cpuOK       bool
	heapPerUser float64
}

// timeUsers calls op for n distinct users ("user-0", ...) and times each
// call on both clocks; what op returns (if not nil) runs after the clocks
// are read. keep runs before the heap is measured, and must hold what op
// built.
func timeUsers(n int, op func(user string) func(), keep func()) userTimes {
	t := userTimes{wall: make([]time.Duration, n), cpu: make([]time.Duration, n), cpuOK: true}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range n {
		user := fmt.Sprint("user-", i)
		// The CPU clock is read outside the wall clock's window: it is a
		// system call, which would otherwise add itself to every wall figure.
		cpu0, ok0 := stubkeys.ThreadCPUTime()
		start := time.Now()
		then := op(user)
		t.wall[i] = time.Since(start)
		cpu1, ok1 := stubkeys.ThreadCPUTime()
		t.cpu[i] = cpu1 - cpu0
		t.cpuOK = t.cpuOK && ok0 && ok1
		if then != nil {
			then()
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	keep()
	t.heapPerUser = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
	slices.Sort(t.wall)
	slices.Sort(t.cpu)
	return t
}

// report reports t's median, p99.99 and max on the wall clock, and p99.99
// and max on the thread's CPU clock when it could be read.
func (t userTimes) report(b *testing.B, name string) {
	n := len(t.wall)
	b.ReportMetric(float64(t.wall[n/2].Nanoseconds()), name+"-median-ns")
	b.ReportMetric(float64(t.wall[n*9999/10000].Nanoseconds()), name+"-p99.99-ns")
	b.ReportMetric(float64(t.wall[n-1].Nanoseconds()), name+"-max-ns")
	if t.cpuOK {
		b.ReportMetric(float64(t.cpu[n*9999/10000].Nanoseconds()), name+"-cpu-p99.99-ns")
		b.ReportMetric(float64(t.cpu[n-1].Nanoseconds()), name+"-cpu-max-ns")
	}
	b.ReportMetric(t.heapPerUser, name+"-heap-B/user")
}
