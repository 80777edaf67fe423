package lease_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dglease/dglease/keys"
	"github.com/dglease/dglease/keys/keystest"
	"github.com/dglease/dglease/lease"
)

// loadFaultRate is the share of creates and deletes loadFlaky fails.
const loadFaultRate = 0.01

// loadFlaky fails about loadFaultRate of the Create and Delete calls with a
// 503, before they reach the service (as an overloaded front end would:
// the call has no effect). The draws come from one seeded generator, so a
// run's sequence of outcomes is fixed; which call gets which outcome
// depends on scheduling.
type loadFlaky struct {
	lease.KeyService

	mu  sync.Mutex
	rng *rand.Rand

	createFaults, deleteFaults atomic.Int64
}

func newLoadFlaky(api lease.KeyService) *loadFlaky {
	return &loadFlaky{KeyService: api, rng: rand.New(rand.NewPCG(2024, 11))}
}

func (f *loadFlaky) fail() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rng.Float64() < loadFaultRate
}

func loadFault(op string) error {
	return &keys.APIError{Op: op, StatusCode: http.StatusServiceUnavailable, Code: "SERVICE_UNAVAILABLE", Message: "fault injected by TestLoad"}
}

func (f *loadFlaky) Create(ctx context.Context, s keys.Spec) (*keys.Key, error) {
	if f.fail() {
		f.createFaults.Add(1)
		return nil, loadFault("create key")
	}
	return f.KeyService.Create(ctx, s)
}

func (f *loadFlaky) Delete(ctx context.Context, id string) error {
	if f.fail() {
		f.deleteFaults.Add(1)
		return loadFault("delete key")
	}
	return f.KeyService.Delete(ctx, id)
}

// loadMem samples the heap while a load runs.
type loadMem struct {
	stop chan struct{}
	done chan struct{}

	peakHeap, peakSys uint64
	start, end        runtime.MemStats
}

func startLoadMem() *loadMem {
	m := &loadMem{stop: make(chan struct{}), done: make(chan struct{})}
	runtime.GC()
	runtime.ReadMemStats(&m.start)
	m.peakHeap, m.peakSys = m.start.HeapAlloc, m.start.Sys
	go func() {
		defer close(m.done)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		var s runtime.MemStats
		for {
			select {
			case <-m.stop:
				return
			case <-t.C:
			}
			runtime.ReadMemStats(&s)
			m.peakHeap = max(m.peakHeap, s.HeapAlloc)
			m.peakSys = max(m.peakSys, s.Sys)
		}
	}()
	return m
}

func (m *loadMem) finish() {
	close(m.stop)
	<-m.done
	runtime.ReadMemStats(&m.end)
	m.peakHeap = max(m.peakHeap, m.end.HeapAlloc)
	m.peakSys = max(m.peakSys, m.end.Sys)
}

// loadFigures are what one run of TestLoad measured.
type loadFigures struct {
	pairs, workers             int
	createFaults, deleteFaults int64
	acquireErrors              int64
	acquirePhase, closePhase   time.Duration
	stats                      lease.Stats
	mem                        *loadMem
	goroutinesBase             int
	goroutinesPeak             int
}

// TestLoad runs 10,000 Acquire/Release pairs from 500 goroutines (1,000
// from 100 with -short) against the in-memory fake with 1% of creates and
// deletes failing, in real time and with real concurrency (no synctest),
// then closes the Manager and checks that every key was deleted exactly
// once and that nothing was left running.
func TestLoad(t *testing.T) {
	pairs, workers := 10000, 500
	if testing.Short() {
		pairs, workers = 1000, 100
	}
	base := runtime.NumGoroutine()
	before := goleak.IgnoreCurrent()
	srv := fake(t)
	flaky := newLoadFlaky(srv.Client())
	m := newManager(t, flaky,
		lease.WithMaxLeases(pairs, pairs),
		// Long enough that no lease ends by its TTL and no key reaches
		// its server-side expiry during the run, however slow.
		lease.WithTTL(time.Minute),
		lease.WithTimeouts(5*time.Second, 5*time.Second))

	// Safety net for the whole run; not an assertion on speed.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	mem := startLoadMem()
	var acquireErrs, acquired, peakG atomic.Int64
	var unexpected sync.Map // error text -> true
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := fmt.Sprintf("load-user-%d", w)
			for i := range pairs / workers {
				// A deadline, as a server handler would pass: Acquire then
				// creates on its own goroutine and arms a context ending.
				actx, acancel := context.WithTimeout(ctx, time.Minute)
				l, err := m.Acquire(actx, user)
				if err != nil {
					acancel()
					var apiErr *keys.APIError
					if errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusServiceUnavailable && strings.Contains(err.Error(), "fault injected by TestLoad") {
						acquireErrs.Add(1)
					} else {
						unexpected.Store(err.Error(), true)
					}
					continue
				}
				acquired.Add(1)
				if i%50 == 0 {
					if g := int64(runtime.NumGoroutine()); g > peakG.Load() {
						peakG.Store(g) // racy max; a figure, not an assertion
					}
				}
				l.Release()
				acancel()
			}
		}()
	}
	wg.Wait()
	acquirePhase := time.Since(start)
	closeStart := time.Now()
	cctx, ccancel := context.WithTimeout(ctx, 2*time.Minute)
	defer ccancel()
	require.NoError(t, m.Close(cctx))
	closePhase := time.Since(closeStart)
	mem.finish()

	unexpected.Range(func(k, _ any) bool {
		t.Errorf("Acquire failed other than by an injected create fault: %s", k)
		return true
	})
	total := int64(pairs / workers * workers)
	assert.Equal(t, flaky.createFaults.Load(), acquireErrs.Load(), "Acquire errors are exactly the injected create faults")
	assert.Equal(t, total, acquired.Load()+acquireErrs.Load())
	assert.Positive(t, flaky.createFaults.Load(), "the run injected create faults")
	assert.Positive(t, flaky.deleteFaults.Load(), "the run injected delete faults")

	// Every key was deleted, exactly once, and carries the marker.
	assert.Empty(t, liveIDs(srv), "only the admin key is live")
	var created int64
	for _, k := range srv.Keys() {
		if k.Key.ID == srv.AdminKeyID() {
			continue
		}
		created++
		_, err := lease.ParseMarker(k.Key.Comment, k.Key.Tags)
		assert.NoError(t, err, "key %s", k.Key.ID)
		if k.Status != keystest.StatusDeleted || k.Deletes != 1 {
			t.Errorf("key %s: status %s, %d deletes; want deleted once", k.Key.ID, k.Status, k.Deletes)
		}
	}
	assert.Equal(t, acquired.Load(), created, "one key per successful Acquire")

	st := m.Stats()
	assert.Equal(t, uint64(acquired.Load()), st.Acquired)
	assert.Equal(t, uint64(acquired.Load()), st.Released)
	assert.Equal(t, uint64(acquired.Load()), st.Deleted)
	assert.Equal(t, uint64(flaky.createFaults.Load()), st.Errors)
	assert.Equal(t, uint64(acquired.Load()+flaky.deleteFaults.Load()), st.DeleteAttempts, "one attempt per key plus one per injected delete fault")
	assert.Zero(t, st.DeleteFailed)
	assert.Zero(t, st.DeletePending)
	assert.Zero(t, st.Live)
	assert.Positive(t, st.DeletePeak)
	assert.LessOrEqual(t, st.DeletePeak, pairs, "the deleter's backlog is bounded by the leases")
	assert.Empty(t, m.Undeleted())

	// Nothing the Manager started is left running (the in-memory fake
	// starts no goroutine of its own).
	goleak.VerifyNone(t, before)

	fig := loadFigures{
		pairs: int(total), workers: workers,
		createFaults: flaky.createFaults.Load(), deleteFaults: flaky.deleteFaults.Load(),
		acquireErrors: acquireErrs.Load(),
		acquirePhase:  acquirePhase, closePhase: closePhase,
		stats: st, mem: mem,
		goroutinesBase: base, goroutinesPeak: int(peakG.Load()),
	}
	t.Logf("%d pairs from %d goroutines: acquire/release %s, Close %s, create faults %d, delete faults %d, DeletePeak %d, peak heap %d MiB",
		fig.pairs, workers, acquirePhase.Round(time.Millisecond), closePhase.Round(time.Millisecond),
		fig.createFaults, fig.deleteFaults, st.DeletePeak, mem.peakHeap>>20)
	switch {
	case !*update:
	case testing.Short():
		t.Log("-update with -short: the load section records the full run only; not written")
	case !t.Failed():
		writeReliabilitySection(t, "load", loadReport(fig))
	}
}

// loadRace reports whether the test binary was built with -race.
func loadRace() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

func loadReport(f loadFigures) string {
	mib := func(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	total := f.acquirePhase + f.closePhase
	cmd := "go test ./lease -run TestLoad -update"
	if loadRace() {
		cmd = "go test -race ./lease -run TestLoad -update"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## Load\n\nGenerated by `%s` (lease/load_test.go). These are measurements\nof one run on one machine: they are never compared, and the test never fails on time.\n\n", cmd)
	fmt.Fprintf(&b, `TestLoad runs %d Acquire/Release pairs from %d goroutines (%d users, one
per goroutine; no rate limit) against the in-memory fake through a
*keys.Client, in real time (no synctest). A KeyService wrapper fails %.0f%% of
creates and deletes at random (seeded) with a 503 before they reach the
fake. Then it closes the Manager. Checked on every run: Acquire fails only
with the injected create faults (as many as were injected); after Close
every key is deleted exactly once and only the admin key is live; the
deleter's counters add up (one attempt per key plus one per injected delete
fault, none given up); the goroutine count returns to its level before the
run; the deleter's peak backlog (Stats.DeletePeak) is at most the number of
leases. `+"`go test -short`"+` runs 1,000 pairs from 100 goroutines.

Release returns at once while the deleter adapts how many deletes run at
once (from 16, up to lease.DefaultDeleteConcurrency, 512): under a Release
storm deletions queue up while it ramps up, and the backlog is bounded by
lease.WithMaxKeys (keys live plus keys pending deletion).

| measure | value |
|---|---:|
| machine | %s/%s, %d CPUs, GOMAXPROCS %d, %s, race detector %s |
| pairs / goroutines | %d / %d |
| injected create faults = Acquire errors | %d = %d |
| injected delete faults (retried after 125..250 ms) | %d |
| delete attempts | %d |
| keys deleted | %d |
| peak pending deletions (Stats.DeletePeak) | %d |
| acquire/release phase | %s (%.0f pairs/s) |
| Close (drains the deleter) | %s |
| wall time, total | %s |
| goroutines before / sampled peak during the run | %d / %d |
| peak heap in use (HeapAlloc, sampled every 5 ms) | %s |
| peak memory from the OS (Sys) | %s |
| allocated in all (TotalAlloc) | %s (%.1f KiB per pair) |
| allocations per pair | %.0f |
| garbage collections | %d |
`,
		f.pairs, f.workers, f.workers, loadFaultRate*100,
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), map[bool]string{true: "on", false: "off"}[loadRace()],
		f.pairs, f.workers,
		f.createFaults, f.acquireErrors,
		f.deleteFaults,
		f.stats.DeleteAttempts,
		f.stats.Deleted,
		f.stats.DeletePeak,
		f.acquirePhase.Round(time.Millisecond), float64(f.pairs)/f.acquirePhase.Seconds(),
		f.closePhase.Round(time.Millisecond),
		total.Round(time.Millisecond),
		f.goroutinesBase, f.goroutinesPeak,
		mib(f.mem.peakHeap),
		mib(f.mem.peakSys),
		mib(f.mem.end.TotalAlloc-f.mem.start.TotalAlloc), float64(f.mem.end.TotalAlloc-f.mem.start.TotalAlloc)/1024/float64(f.pairs),
		float64(f.mem.end.Mallocs-f.mem.start.Mallocs)/float64(f.pairs),
		f.mem.end.NumGC-f.mem.start.NumGC)
	return b.String()
}
