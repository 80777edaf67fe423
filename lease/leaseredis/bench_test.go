package leaseredis_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dglease/dglease/internal/stubkeys"
	"github.com/dglease/dglease/lease"
	"github.com/dglease/dglease/lease/leaseredis"
)

// BenchmarkAcquire runs Acquire+Release against an instant KeyService,
// alternately with the in-process limiter and with the Redis limiter on a
// real redis-server on loopback, and reports both and their ratio (wall
// clock). The difference is the round trip of each admission (one
// MULTI/EXEC: the caps script and redis_rate's GCRA script) plus the
// release sent afterwards by the limiter's own goroutine (waited for with
// Flush, so it is counted too).
func BenchmarkAcquire(b *testing.B) {
	rs := startRedis(b)
	rdb := redis.NewClient(&redis.Options{Addr: rs.addr()})
	defer rdb.Close()
	limiter := leaseredis.New(rdb)
	const batch = 200
	runs := 0
	run := func(opts ...lease.Option) time.Duration {
		runs++
		user := fmt.Sprint("bench-", runs) // a fresh bucket of batch tokens
		start := time.Now()
		m, err := lease.New(&stubkeys.Service{}, append([]lease.Option{lease.WithRateLimit(time.Hour, batch), lease.WithMaxLeases(batch, batch)}, opts...)...)
		if err != nil {
			b.Fatal(err)
		}
		for range batch {
			l, err := m.Acquire(context.Background(), user)
			if err != nil {
				b.Fatal(err)
			}
			l.Release()
		}
		if err := m.Close(context.Background()); err != nil {
			b.Fatal(err)
		}
		if err := limiter.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	var local, shared time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		local += run()
		shared += run(lease.WithLimiter(limiter))
	}
	n := float64(b.N * batch)
	b.ReportMetric(float64(local.Nanoseconds())/n, "local-ns/pair")
	b.ReportMetric(float64(shared.Nanoseconds())/n, "redis-ns/pair")
	b.ReportMetric(float64(shared)/float64(local), "redis/local-wall")
}
