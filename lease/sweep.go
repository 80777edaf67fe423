package lease

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/dglease/dglease/keys"
)

// sweepConcurrency is how many deletes Sweep runs at once by default.
const sweepConcurrency = 8

// SweepOptions tune [Sweep]. The zero value deletes every expired key that
// carries this library's marker, 8 at a time.
//
// Skip is called on Sweep's calling goroutine before any delete; Progress
// is called from Sweep's delete goroutines, one call at a time.
type SweepOptions struct {
	// DryRun lists what would be deleted without deleting it.
	DryRun bool
	// Concurrency bounds deletes at once; 0 means 8. (Sweep does not
	// adapt as the deleter does, nor retry: it stays gentle on Deepgram.)
	Concurrency int
	// DeleteTimeout bounds each delete call; 0 means DefaultDeleteTimeout.
	// A delete that times out is reported in SweepResult.Failed and left
	// for the next Sweep.
	DeleteTimeout time.Duration
	// Skip, when set, reports keys to leave alone (e.g. pending in a
	// Manager's own deleter).
	Skip func(keyID string) bool
	// Progress, when set, is called after each key is handled, with the
	// number handled so far and the number to handle. Calls are serialized.
	Progress func(done, total int)
}

// expiredLister is implemented by *keys.Client: Sweep then asks Deepgram
// which keys have expired, by Deepgram's clock.
type expiredLister interface {
	ListExpired(ctx context.Context) ([]keys.Key, error)
}

// SweepResult is what [Sweep] found and did.
type SweepResult struct {
	// Listed counts the keys listed: the expired ones when the
	// KeyService can list those alone (as *keys.Client does), else all.
	Listed int
	// Marked counts those carrying this library's marker.
	Marked int
	// Expired lists the marked keys whose expiry has passed: those to
	// delete.
	Expired []keys.Key
	// Deleted counts keys deleted (or found already gone); 0 in a dry run.
	Deleted int
	// Failed lists the keys whose deletion failed, with why.
	Failed []Undeleted
}

// Sweep deletes, from the project c manages, every key that carries this
// library's marker (from any Manager, any replica, any earlier process) and
// whose expiry has passed: by Deepgram's clock when c can list expired keys
// alone (*keys.Client can), else by the local clock. It never touches a key without the marker, nor a
// marked key still in its lifetime. It is stateless and safe to run from
// many replicas at once: a key deleted by another replica counts as deleted.
// Run it at start-up to clean up after a crash, or periodically.
//
// The error joins every failure; the result says what was done either way.
func Sweep(ctx context.Context, c KeyService, opts SweepOptions) (SweepResult, error) {
	var res SweepResult
	if c == nil {
		return res, errors.New("lease: Sweep needs a KeyService")
	}
	var list []keys.Key
	var err error
	byServer := false
	if el, ok := c.(expiredLister); ok {
		list, err = el.ListExpired(ctx)
		byServer = true
	} else {
		list, err = c.List(ctx)
	}
	if err != nil {
		return res, fmt.Errorf("lease: sweep: %w", err)
	}
	res.Listed = len(list)
	now := time.Now()
	var marks []Marker // the marker of each key in res.Expired
	for _, k := range list {
		mk, err := ParseMarker(k.Comment, k.Tags)
		if err != nil {
			continue
		}
		res.Marked++
		if k.Expires.IsZero() || (!byServer && now.Before(k.Expires)) {
			continue
		}
		if opts.Skip != nil && opts.Skip(k.ID) {
			continue
		}
		res.Expired = append(res.Expired, k)
		marks = append(marks, mk)
	}
	if opts.DryRun || len(res.Expired) == 0 {
		return res, nil
	}
	n := opts.Concurrency
	if n <= 0 {
		n = sweepConcurrency
	}
	timeout := opts.DeleteTimeout
	if timeout <= 0 {
		timeout = DefaultDeleteTimeout
	}
	var mu sync.Mutex
	var done int
	var g errgroup.Group
	g.SetLimit(n)
	for i, k := range res.Expired {
		g.Go(func() error {
			dctx, cancel := context.WithTimeout(ctx, timeout)
			err := c.Delete(dctx, k.ID)
			cancel()
			mu.Lock()
			defer mu.Unlock()
			if err == nil || errors.Is(err, keys.ErrNotFound) {
				res.Deleted++
			} else {
				res.Failed = append(res.Failed, Undeleted{KeyID: k.ID, LeaseID: marks[i].Lease, User: marks[i].User, Expires: k.Expires, Err: err})
			}
			done++
			if opts.Progress != nil {
				opts.Progress(done, len(res.Expired))
			}
			return nil
		})
	}
	_ = g.Wait()
	if len(res.Failed) == 0 {
		return res, nil
	}
	errs := make([]error, 0, len(res.Failed))
	for _, f := range res.Failed {
		errs = append(errs, fmt.Errorf("lease: sweep: delete %s: %w", f.KeyID, f.Err))
	}
	return res, errors.Join(errs...)
}

// Sweep deletes every expired key carrying this library's marker from the
// Manager's project, except keys its own deleter is handling, and returns
// how many it deleted. See the package-level [Sweep].
func (m *Manager) Sweep(ctx context.Context) (deleted int, err error) {
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return 0, ErrClosed
	}
	res, err := Sweep(ctx, m.api, SweepOptions{Concurrency: min(sweepConcurrency, m.cfg.deleteConcurrency), DeleteTimeout: m.cfg.deleteTimeout, Skip: m.del.isPending})
	if res.Deleted > 0 {
		gone := make(map[string]bool, len(res.Expired))
		for _, k := range res.Expired {
			gone[k.ID] = true
		}
		for _, f := range res.Failed {
			delete(gone, f.KeyID)
		}
		m.del.forget(gone) // no longer undeleted: Close must not name them
	}
	return res.Deleted, err
}

// sweeper calls Manager.Sweep on a timer until stopped.
type sweeper struct {
	m        *Manager
	interval time.Duration

	mu      sync.Mutex
	timer   *time.Timer
	stopped bool
	running sync.WaitGroup
	ctx     context.Context // cancelled by stop, so Close never waits on a sweep
	cancel  context.CancelFunc
}

func newSweeper(m *Manager, interval time.Duration) *sweeper {
	s := &sweeper{m: m, interval: interval}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.mu.Lock() // run reads s.timer under s.mu, and may run before this returns
	s.timer = time.AfterFunc(interval, s.run)
	s.mu.Unlock()
	return s
}

func (s *sweeper) run() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.running.Add(1)
	s.mu.Unlock()
	defer s.running.Done()
	ctx, cancel := context.WithTimeout(s.ctx, s.interval)
	_, err := s.m.Sweep(ctx)
	cancel()
	s.mu.Lock()
	if !s.stopped {
		s.timer.Reset(s.interval) // before the hook, which may end the goroutine
	}
	s.mu.Unlock()
	if err != nil && !errors.Is(err, ErrClosed) && s.ctx.Err() == nil {
		s.m.hooks.run(s.m.hooks.errs, Event{Time: time.Now(), Op: "sweep", Err: err})
	}
}

// stop stops the timer, cancels a running sweep and waits for it as long
// as ctx allows.
func (s *sweeper) stop(ctx context.Context) {
	s.mu.Lock()
	s.stopped = true
	s.timer.Stop()
	s.mu.Unlock()
	s.cancel()
	waitCtx(ctx, &s.running)
}
