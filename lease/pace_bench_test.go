package lease_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dglease/dglease/keys/keystest"
	"github.com/dglease/dglease/lease"
)

// BenchmarkDeletionKeepsPace hands out credentials from callers goroutines
// (each: Acquire, then Release at once) against the in-memory fake with a
// real round-trip latency on every create and delete, and reports, in one
// run for the deleter bounded at 8 (the old fixed concurrency) and at the
// default bound (512, adaptive): credentials handed out per second, keys
// deleted per second (from the first Acquire until the last delete), their
// ratio (deleted/handed: keys deleted while credentials were being handed
// out; overall-deleted/handed: all keys, until the last delete), the peak
// of keys pending deletion, and how long the deletions went on after the
// last Release. Wall clock.
//
//	go test -run '^$' -bench DeletionKeepsPace -benchtime 1x ./lease/
func BenchmarkDeletionKeepsPace(b *testing.B) {
	for _, latency := range []time.Duration{20 * time.Millisecond, 50 * time.Millisecond} {
		for _, callers := range []int{16, 256} {
			for _, bound := range []int{8, lease.DefaultDeleteConcurrency} {
				n := 32 * callers // 512 for 16 callers, 8,192 for 256
				b.Run(fmt.Sprintf("latency=%s/callers=%d/bound=%d", latency, callers, bound), func(b *testing.B) {
					for range b.N {
						srv := fake(b)
						srv.SetLatency(keystest.OpCreate, latency)
						srv.SetLatency(keystest.OpDelete, latency)
						m, err := lease.New(srv.Client(), lease.WithRateLimit(0, 1), lease.WithMaxLeases(n, n), lease.WithDeleteConcurrency(bound), lease.WithHooks(noopHooks))
						if err != nil {
							b.Fatal(err)
						}
						start := time.Now()
						var wg sync.WaitGroup
						for c := range callers {
							wg.Go(func() {
								for range n / callers {
									l, err := m.Acquire(context.Background(), fmt.Sprint("user-", c))
									if err != nil {
										b.Error(err)
										return
									}
									l.Release()
								}
							})
						}
						wg.Wait()
						handed := time.Since(start)
						deletedByThen := m.Stats().Deleted
						if err := m.Flush(context.Background()); err != nil {
							b.Fatal(err)
						}
						deleted := time.Since(start)
						st := m.Stats()
						_ = m.Close(context.Background()) // names the keys given up on, counted below
						if bound != 8 && st.Deleted != uint64(n) {
							b.Fatalf("deleted %d of %d", st.Deleted, n)
						}
						// With 8 at a time, keys can wait in the queue past
						// their expiry (15 s): given up, never deleted.
						b.ReportMetric(float64(uint64(n)-st.Deleted), "expired-undeleted")
						handedRate := float64(n) / handed.Seconds()
						stormRate := float64(deletedByThen) / handed.Seconds()
						b.ReportMetric(handedRate, "handed/s")
						b.ReportMetric(stormRate, "deleted/s")
						b.ReportMetric(stormRate/handedRate, "deleted/handed")
						b.ReportMetric(float64(n)/deleted.Seconds()/handedRate, "overall-deleted/handed")
						b.ReportMetric(float64(st.DeletePeak), "peak-pending")
						b.ReportMetric((deleted-handed).Seconds()*1000, "drain-ms")
					}
				})
			}
		}
	}
}
