package lease_test

import (
	"context"
	"fmt"
	"runtime"
	"runtime/metrics"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	sdkinterfaces "github.com/deepgram/deepgram-go-sdk/v3/pkg/client/interfaces/v1"
	sdkmanage "github.com/deepgram/deepgram-go-sdk/v3/pkg/client/manage"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/internal/stubkeys"
	"github.com/dglease/dglease/keys"
	"github.com/dglease/dglease/lease"
)

// stub is an instant, stateless KeyService that counts concurrent deletes:
// it isolates the lease package's own costs. Create returns what
// keys.Client.Create returns for a real answer: a fresh 40-character secret
// and the key's comment, scopes, tags and times, each its own allocation.
type stub struct {
	keys       stubkeys.Service
	inDelete   atomic.Int64
	maxDelete  atomic.Int64
	deleted    atomic.Int64
	deleteWait time.Duration
	createWait time.Duration
}

func (s *stub) Create(ctx context.Context, spec keys.Spec) (*keys.Key, error) {
	if s.createWait > 0 {
		time.Sleep(s.createWait)
	}
	return s.keys.Create(ctx, spec)
}

func (s *stub) Delete(ctx context.Context, id string) error {
	cur := s.inDelete.Add(1)
	defer s.inDelete.Add(-1)
	for {
		m := s.maxDelete.Load()
		if cur <= m || s.maxDelete.CompareAndSwap(m, cur) {
			break
		}
	}
	if s.deleteWait > 0 {
		time.Sleep(s.deleteWait)
	}
	s.deleted.Add(1)
	return nil
}

func (s *stub) List(ctx context.Context) ([]keys.Key, error) { return s.keys.List(ctx) }

func (s *stub) Grant(ctx context.Context, ttl time.Duration) (*keys.Token, error) {
	return s.keys.Grant(ctx, ttl)
}

// noopHooks sets every hook to a function that does nothing: the figures
// below are taken with hooks set, as a user with logging or metrics has.
var noopHooks = lease.Hooks{
	OnAcquire: func(lease.Event) {},
	OnRelease: func(lease.Event) {},
	OnDenied:  func(lease.Event) {},
	OnError:   func(lease.Event) {},
	OnLeak:    func(lease.Event) {},
}

// BenchmarkLeaseOverhead runs the official SDK's create+delete and
// Acquire+Release (with its deletion, hooks set) alternately on the same
// in-memory fake and reports their ratio, by wall and by CPU time: the
// lease package's overhead.
func BenchmarkLeaseOverhead(b *testing.B) {
	srv := fake(b)
	sdk := sdkmanage.New(srv.AdminKey(), &sdkinterfaces.ClientOptions{Host: "http://keystest.invalid"})
	require.NotNil(b, sdk)
	sdk.HTTPClient.Client.Transport = srv.Transport()
	const batch = 200
	var sdkTime, leaseTime, sdkCPU, leaseCPU time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start, cpu := time.Now(), stubkeys.CPUTime()
		for range batch {
			sdkPair(b, sdk, srv.ProjectID())
		}
		sdkTime += time.Since(start)
		sdkCPU += stubkeys.CPUTime() - cpu

		// A Manager per batch: its Close waits until the deleter has
		// deleted every key, without polling beside it.
		start, cpu = time.Now(), stubkeys.CPUTime()
		stubkeys.LeaseBatch(b, srv.Client(), "bench", batch, lease.WithHooks(noopHooks))
		leaseTime += time.Since(start)
		leaseCPU += stubkeys.CPUTime() - cpu
	}
	b.ReportMetric(float64(sdkTime.Nanoseconds())/float64(b.N*batch), "sdk-ns/pair")
	b.ReportMetric(float64(leaseTime.Nanoseconds())/float64(b.N*batch), "lease-ns/pair")
	b.ReportMetric(float64(leaseTime)/float64(sdkTime), "lease/sdk-wall")
	b.ReportMetric(float64(leaseCPU)/float64(sdkCPU), "lease/sdk-cpu")
}

// BenchmarkHookCost runs Acquire+Release (and the deletion, until Close)
// against the instant stub, alternately without hooks and with a no-op
// function on every hook, and reports what the synchronous hooks add per
// lease, by wall and by CPU time.
func BenchmarkHookCost(b *testing.B) { stubkeys.CompareHooks(b, "hooks", noopHooks) }

// BenchmarkRelease measures the time a caller spends in Release.
func BenchmarkRelease(b *testing.B) {
	s := &stub{}
	m := newManager(b, s, lease.WithMaxLeases(1<<22, 1<<22), lease.WithHooks(noopHooks))
	ls := make([]*lease.Lease, b.N)
	for i := range ls {
		l, err := m.Acquire(context.Background(), "bench")
		if err != nil {
			b.Fatal(err)
		}
		ls[i] = l
	}
	times := make([]time.Duration, b.N)
	b.ResetTimer()
	for i, l := range ls {
		start := time.Now()
		l.Release()
		times[i] = time.Since(start)
	}
	b.StopTimer()
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Nanoseconds()), "median-ns/release")
	b.ReportMetric(float64(times[len(times)*99/100].Nanoseconds()), "p99-ns/release")
}

// BenchmarkLiveLeases holds 100,000 live leases and reports the heap and
// goroutines they cost, with a context that cannot end and with a
// cancellable one per lease (which costs an AfterFunc registration).
func BenchmarkLiveLeases(b *testing.B) {
	b.Run("ctx=background", func(b *testing.B) { benchLiveLeases(b, false) })
	b.Run("ctx=cancellable", func(b *testing.B) { benchLiveLeases(b, true) })
}

func benchLiveLeases(b *testing.B, cancellable bool) {
	const n = 100000
	for i := 0; i < b.N; i++ {
		s := &stub{}
		m, err := lease.New(s, lease.WithRateLimit(0, 1), lease.WithMaxLeases(n, n), lease.WithTTL(time.Hour), lease.WithHooks(noopHooks))
		require.NoError(b, err)
		settleHeap()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		g0 := runtime.NumGoroutine()
		ls := make([]*lease.Lease, 0, n)
		cancels := make([]context.CancelFunc, 0, n)
		for j := range n {
			ctx := context.Background()
			if cancellable {
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				cancels = append(cancels, cancel)
			}
			l, err := m.Acquire(ctx, fmt.Sprint("user-", j%1000))
			if err != nil {
				b.Fatal(err)
			}
			ls = append(ls, l)
		}
		settleHeap()
		runtime.ReadMemStats(&after)
		g1 := runtime.NumGoroutine()
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/lease")
		b.ReportMetric(float64(g1-g0), "goroutines-added")
		for _, l := range ls {
			l.Release()
		}
		for _, cancel := range cancels {
			cancel()
		}
		require.NoError(b, m.Close(context.Background()))
	}
}

// settleHeap collects garbage until the runtime's cleanups have run: the
// leak cleanup of a collected lease holds its record until it runs, on the
// runtime's own goroutine, after the collection. Three collections, each
// waited out until every cleanup it queued has run (runtime/metrics).
func settleHeap() {
	ms := []metrics.Sample{{Name: "/gc/cleanups/queued:cleanups"}, {Name: "/gc/cleanups/executed:cleanups"}}
	for range 3 {
		runtime.GC()
		for metrics.Read(ms); ms[0].Value.Uint64() > ms[1].Value.Uint64(); metrics.Read(ms) {
			runtime.Gosched()
		}
	}
}

// BenchmarkReleaseStorm releases 10,000 leases at once and waits until all
// are deleted.
func BenchmarkReleaseStorm(b *testing.B) {
	const n = 10000
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s := &stub{}
		m, err := lease.New(s, lease.WithRateLimit(0, 1), lease.WithMaxLeases(n, n))
		require.NoError(b, err)
		ls := make([]*lease.Lease, n)
		for j := range ls {
			ls[j], _ = m.Acquire(context.Background(), "storm")
		}
		b.StartTimer()
		for _, l := range ls {
			l.Release()
		}
		require.NoError(b, m.Close(context.Background()))
		b.StopTimer()
		if s.deleted.Load() != n || s.maxDelete.Load() > lease.DefaultDeleteConcurrency {
			b.Fatalf("deleted %d of %d, max concurrent deletes %d", s.deleted.Load(), n, s.maxDelete.Load())
		}
		b.ReportMetric(float64(s.maxDelete.Load()), "max-concurrent-deletes")
	}
}

// leaseGoroutines counts the goroutines running this package's code. (All
// goroutines of the process would include other tests' leftovers.)
func leaseGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "github.com/dglease/dglease/lease.") {
			count++
		}
	}
	return count
}

func TestGoroutinesDoNotGrowWithLeases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &stub{}
		m := newManager(t, s, lease.WithMaxLeases(5000, 5000), lease.WithTTL(time.Minute), lease.WithHooks(noopHooks))
		count := func(n int) int {
			ls := make([]*lease.Lease, n)
			for i := range ls {
				var err error
				ls[i], err = m.Acquire(context.Background(), "u")
				require.NoError(t, err)
			}
			synctest.Wait()
			g := leaseGoroutines()
			for _, l := range ls {
				l.Release()
			}
			synctest.Wait()
			return g
		}
		assert.Equal(t, 0, count(10), "no goroutine per lease, none idle")
		assert.Equal(t, 0, count(5000))
		require.NoError(t, m.Close(context.Background()))
	})
}

func TestReleaseStormRespectsDeleteConcurrency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &stub{deleteWait: 100 * time.Millisecond}
		// Keys live an hour: the 250 s of fake time the deletes take is less.
		m := newManager(t, s, lease.WithMaxLeases(10000, 10000), lease.WithDeleteConcurrency(4), lease.WithTTL(time.Hour))
		ls := make([]*lease.Lease, 10000)
		for i := range ls {
			var err error
			ls[i], err = m.Acquire(context.Background(), "storm")
			require.NoError(t, err)
		}
		var wg sync.WaitGroup
		for _, l := range ls {
			wg.Add(1)
			go func() { defer wg.Done(); l.Release() }()
		}
		wg.Wait()
		require.NoError(t, m.Close(context.Background()))
		assert.Equal(t, int64(10000), s.deleted.Load())
		assert.Equal(t, int64(4), s.maxDelete.Load())
		assert.Equal(t, 10000, m.Stats().DeletePeak)
	})
}
