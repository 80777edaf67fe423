package lease_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"

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
// release once, timing every Acquire (wall), so that a stall of the
// per-user state's upkeep shows in the tail: p99.99 and max.
func BenchmarkMillionUsers(b *testing.B) {
	const n = 1_000_000
	for range b.N {
		// Grant tokens: no deletions, whose work on the other goroutines
		// would compete for the two cores and blur the upkeep measured here.
		m, err := lease.New(&stub{}, lease.WithGrantTokens(), lease.WithRateLimit(time.Second, 5), lease.WithMaxLeases(1000, 10), lease.WithHooks(noopHooks))
		if err != nil {
			b.Fatal(err)
		}
		times := make([]time.Duration, n)
		for i := range times {
			user := fmt.Sprint("user-", i)
			start := time.Now()
			l, err := m.Acquire(context.Background(), user)
			times[i] = time.Since(start)
			if err != nil {
				b.Fatal(err)
			}
			l.Release()
		}
		if err := m.Close(context.Background()); err != nil {
			b.Fatal(err)
		}
		slices.Sort(times)
		b.ReportMetric(float64(times[len(times)/2].Nanoseconds()), "acquire-median-ns")
		b.ReportMetric(float64(times[len(times)*9999/10000].Nanoseconds()), "acquire-p99.99-ns")
		b.ReportMetric(float64(times[len(times)-1].Nanoseconds()), "acquire-max-ns")
	}
}
