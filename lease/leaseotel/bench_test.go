package leaseotel_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/dglease/dglease/internal/stubkeys"
	"github.com/dglease/dglease/lease"
	"github.com/dglease/dglease/lease/leaseotel"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkMetricHooks runs Acquire+Release (and the deletion, until
// Close) alternately without hooks and with leaseotel's hooks on an SDK
// MeterProvider, and reports what the metrics add, by wall and CPU time.
func BenchmarkMetricHooks(b *testing.B) {
	const batch = 1000
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	metrics, err := leaseotel.Hooks(mp)
	if err != nil {
		b.Fatal(err)
	}
	run := func(opts ...lease.Option) (wall, cpu time.Duration) {
		start, c := time.Now(), cpuTime()
		m, err := lease.New(&stubkeys.Service{}, append([]lease.Option{lease.WithRateLimit(0, 1), lease.WithMaxLeases(batch, batch)}, opts...)...)
		if err != nil {
			b.Fatal(err)
		}
		for range batch {
			l, err := m.Acquire(context.Background(), "bench")
			if err != nil {
				b.Fatal(err)
			}
			l.Release()
		}
		if err := m.Close(context.Background()); err != nil {
			b.Fatal(err)
		}
		return time.Since(start), cpuTime() - c
	}
	var noneWall, noneCPU, hookWall, hookCPU time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w, c := run()
		noneWall, noneCPU = noneWall+w, noneCPU+c
		w, c = run(lease.WithHooks(metrics))
		hookWall, hookCPU = hookWall+w, hookCPU+c
	}
	n := float64(b.N * batch)
	b.ReportMetric(float64(noneWall.Nanoseconds())/n, "none-ns/pair")
	b.ReportMetric(float64(hookWall.Nanoseconds())/n, "metrics-ns/pair")
	b.ReportMetric(float64(hookCPU-noneCPU)/n, "added-cpu-ns/pair")
	b.ReportMetric(float64(hookWall)/float64(noneWall), "metrics/none-wall")
	b.ReportMetric(float64(hookCPU)/float64(noneCPU), "metrics/none-cpu")
}
