package leaseredis_test

import (
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
// release sent afterwards by the limiter's own goroutine (Manager.Close
// flushes it, so it is counted too).
func BenchmarkAcquire(b *testing.B) {
	rs := startRedis(b)
	rdb := redis.NewClient(&redis.Options{Addr: rs.addr()})
	defer rdb.Close()
	limiter := leaseredis.New(rdb)
	const batch = 200
	runs := 0
	run := func(opts ...lease.Option) time.Duration {
		runs++
		start := time.Now()
		// A fresh user each run: a fresh bucket of batch tokens.
		stubkeys.LeaseBatch(b, &stubkeys.Service{}, fmt.Sprint("bench-", runs), batch, append([]lease.Option{lease.WithRateLimit(time.Hour, batch)}, opts...)...)
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
