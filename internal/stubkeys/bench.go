package stubkeys

import (
	"context"
	"testing"
	"time"

	"github.com/dglease/dglease/lease"
)

// CompareHooks runs Acquire+Release of batches of 1,000 leases (and their
// deletion, until Close) against a Service, alternately without hooks and
// with hooks, b.N times each, and reports per lease: the wall time of each
// ("none-ns/pair", name+"-ns/pair"), the CPU time hooks add
// ("added-cpu-ns/pair"), and the ratios with/without by wall and by CPU
// (name+"/none-wall", name+"/none-cpu").
func CompareHooks(b *testing.B, name string, hooks lease.Hooks) {
	const batch = 1000
	run := func(opts ...lease.Option) (wall, cpu time.Duration) {
		start, c := time.Now(), CPUTime()
		LeaseBatch(b, &Service{}, "bench", batch, opts...)
		return time.Since(start), CPUTime() - c
	}
	var noneWall, noneCPU, hookWall, hookCPU time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w, c := run()
		noneWall, noneCPU = noneWall+w, noneCPU+c
		w, c = run(lease.WithHooks(hooks))
		hookWall, hookCPU = hookWall+w, hookCPU+c
	}
	n := float64(b.N * batch)
	b.ReportMetric(float64(noneWall.Nanoseconds())/n, "none-ns/pair")
	b.ReportMetric(float64(hookWall.Nanoseconds())/n, name+"-ns/pair")
	b.ReportMetric(float64(hookCPU-noneCPU)/n, "added-cpu-ns/pair")
	b.ReportMetric(float64(hookWall)/float64(noneWall), name+"/none-wall")
	b.ReportMetric(float64(hookCPU)/float64(noneCPU), name+"/none-cpu")
}

// LeaseBatch builds a Manager on api with no rate limit, room for n
// leases and opts (which may set a rate limit), acquires and releases n
// leases for user, and closes it, which waits until every key is deleted
// and the limiter has sent what it queued. Any error fails tb.
func LeaseBatch(tb testing.TB, api lease.KeyService, user string, n int, opts ...lease.Option) {
	tb.Helper()
	m, err := lease.New(api, append([]lease.Option{lease.WithRateLimit(0, 1), lease.WithMaxLeases(n, n)}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	for range n {
		l, err := m.Acquire(context.Background(), user)
		if err != nil {
			tb.Fatal(err)
		}
		l.Release()
	}
	if err := m.Close(context.Background()); err != nil {
		tb.Fatal(err)
	}
}
