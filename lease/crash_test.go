package lease_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/keys"
	"github.com/dglease/dglease/keys/keystest"
	"github.com/dglease/dglease/lease"
)

// The child process of TestCrashRecovery is this test binary, re-executed
// with -test.run=^TestCrashRecoveryChild$ and these variables (not
// DEEPGRAM_*: TestMain unsets those).
const (
	crashChildEnv   = "DGLEASE_CRASH_CHILD" // "1" in the child
	crashURLEnv     = "DGLEASE_CRASH_URL"
	crashProjectEnv = "DGLEASE_CRASH_PROJECT"
	crashKeyEnv     = "DGLEASE_CRASH_ADMIN_KEY"
)

const (
	// crashTTL is the child's lease TTL: long enough that no lease ends
	// by itself before the kill, however slow the machine.
	crashTTL = time.Minute
	// crashWorkers goroutines acquire in the child.
	crashWorkers = 8
	// crashKillAt is how many acquisitions the parent sees before the kill.
	crashKillAt = 80
	// crashLatency delays every create on the fake, so that creates are in
	// flight when the child dies.
	crashLatency = 20 * time.Millisecond
	// crashLostAnswers creates take effect but lose their answer: keys the
	// child's Manager never learns of, as a crash between the create and
	// its answer leaves them.
	crashLostAnswers = 5
	// crashLinePrefix starts each line the child prints per lease.
	crashLinePrefix = "crash-acquired "
)

// TestCrashRecoveryChild is the process TestCrashRecovery kills: it
// acquires leases from several goroutines against the parent's fake, prints
// each lease ID (never a secret) and holds every lease until it is killed.
func TestCrashRecoveryChild(t *testing.T) {
	if os.Getenv(crashChildEnv) != "1" {
		t.Skip("the child process of TestCrashRecovery; skipped unless " + crashChildEnv + "=1")
	}
	c, err := keys.New(os.Getenv(crashKeyEnv), os.Getenv(crashProjectEnv), keys.WithHost(os.Getenv(crashURLEnv)))
	require.NoError(t, err)
	m, err := lease.New(c, lease.WithRateLimit(0, 1), lease.WithMaxLeases(10000, 10000), lease.WithTTL(crashTTL))
	require.NoError(t, err)
	// Safety net: a child its parent failed to kill stops by itself.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var mu sync.Mutex
	var held []*lease.Lease // held until the kill: never released, never leaked
	var wg sync.WaitGroup
	for w := range crashWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := fmt.Sprintf("crash-user-%d", w)
			for ctx.Err() == nil {
				l, err := m.Acquire(context.Background(), user)
				switch {
				case errors.Is(err, lease.ErrDenied):
					<-ctx.Done() // caps reached: hold what we have
					return
				case err != nil:
					// e.g. an answer lost on purpose; try again.
					select {
					case <-ctx.Done():
					case <-time.After(10 * time.Millisecond):
					}
					continue
				}
				mu.Lock()
				held = append(held, l)
				fmt.Fprintf(os.Stdout, "%s%s\n", crashLinePrefix, l.ID())
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	mu.Lock()
	t.Logf("not killed: held %d leases", len(held))
	mu.Unlock()
	_ = m.Close(context.Background())
}

// crashFront is the loopback listener the child talks to. It passes every
// request to the fake in memory, so that once Close returns (it waits for
// every request in flight) no request of the dead child can still reach
// the fake: the fake's own socket gives no such point.
type crashFront struct {
	*httptest.Server
	creating atomic.Int64 // create requests in flight
}

func newCrashFront(t *testing.T, srv *keystest.Server) *crashFront {
	f := &crashFront{}
	tr := srv.Transport()
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/keys") {
			f.creating.Add(1)
			defer f.creating.Add(-1)
		}
		out := r.Clone(r.Context())
		out.RequestURI = ""
		out.URL.Scheme, out.URL.Host = "http", "keystest.invalid"
		res, err := tr.RoundTrip(out)
		if err != nil {
			// The fake lost the answer, or the child is gone: no answer.
			panic(http.ErrAbortHandler)
		}
		defer res.Body.Close()
		for k, v := range res.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(res.StatusCode)
		_, _ = io.Copy(w, res.Body)
	}))
	t.Cleanup(f.Close)
	return f
}

// crashSeedForeignKeys adds keys that are not this library's: Sweep must
// never touch them. Half expire; two look like markers but are not.
func crashSeedForeignKeys(srv *keystest.Server) []keys.Key {
	const hexID = "0123456789abcdef"
	specs := []keys.Spec{
		{Comment: "ops team", Scopes: []string{"usage:write"}},
		{Comment: "ci runner", Scopes: []string{"usage:write"}, TTL: time.Second},
		{Comment: "", Scopes: []string{"usage:read"}, TTL: time.Second},
		{Comment: "dglease lease=x mgr=y user=z", Tags: []string{"dglease"}, Scopes: []string{"usage:write"}, TTL: time.Second},
		// A well-formed marker comment whose tags do not match: not ours.
		{Comment: "dglease lease=" + hexID + " mgr=" + hexID + " user=mallory", Tags: []string{"dglease"}, Scopes: []string{"usage:write"}, TTL: time.Second},
		{Comment: "partner", Tags: []string{"team:a"}, Scopes: []string{"usage:write"}},
	}
	out := make([]keys.Key, 0, len(specs))
	for _, s := range specs {
		out = append(out, srv.AddKey(s))
	}
	return out
}

// crashFigures are what one run of TestCrashRecovery saw.
type crashFigures struct {
	seenAtKill     int // lease lines read when the kill was sent
	printed        int // lease lines the child printed in all
	inFlightAtKill int // create requests in flight at the front at the kill
	cutOff         int // creates the kill cut off: no answer, no key
	unacknowledged int // marker keys whose lease the child never printed
	marked         int // marker keys on the fake after the kill
	sweptBefore    int // deleted by a Sweep before the expiry (must be 0)
	swept          int // deleted by the Sweep after the expiry
	foreign        int // foreign keys seeded
	foreignExpired int // of which expired
	childRun       time.Duration
}

// TestCrashRecovery kills (SIGKILL) a process holding leases, then checks
// that a fresh Manager's Sweep, once the keys have expired, deletes every
// key the dead process left, and nothing else.
func TestCrashRecovery(t *testing.T) {
	srv := fake(t)
	foreign := crashSeedForeignKeys(srv)
	srv.SetLatency(keystest.OpCreate, crashLatency)
	srv.LoseAnswer(keystest.OpCreate, crashLostAnswers)
	front := newCrashFront(t, srv)

	// Safety net for everything below; not an assertion on speed.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCrashRecoveryChild$", "-test.count=1", "-test.timeout=3m")
	cmd.Env = append(os.Environ(),
		crashChildEnv+"=1",
		crashURLEnv+"="+front.URL,
		crashProjectEnv+"="+srv.ProjectID(),
		crashKeyEnv+"="+srv.AdminKey(),
	)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	start := time.Now()
	require.NoError(t, cmd.Start())

	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	printed := map[string]bool{}
	var other []string // anything else the child printed, for diagnostics
	read := func(line string) {
		if id, ok := strings.CutPrefix(line, crashLinePrefix); ok {
			printed[id] = true
		} else {
			other = append(other, line)
		}
	}
	var fig crashFigures
	for len(printed) < crashKillAt {
		select {
		case line, ok := <-lines:
			if !ok {
				_ = cmd.Wait()
				t.Fatalf("the child exited after %d leases\nstdout:\n%s\nstderr:\n%s", len(printed), strings.Join(other, "\n"), stderr.String())
			}
			read(line)
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			for range lines {
			}
			_ = cmd.Wait()
			t.Fatalf("safety timeout: the child printed %d leases\nstderr:\n%s", len(printed), stderr.String())
		}
	}
	fig.seenAtKill = len(printed)
	fig.inFlightAtKill = int(front.creating.Load())
	require.NoError(t, cmd.Process.Kill()) // SIGKILL: no deferred call, no Close
	fig.childRun = time.Since(start)
	for line := range lines { // what the child wrote before it died
		read(line)
	}
	err = cmd.Wait()
	var exitErr *exec.ExitError
	require.ErrorAs(t, err, &exitErr, "the child must die of the kill")
	if runtime.GOOS != "windows" { // where Kill makes the process exit with status 1
		assert.False(t, exitErr.Exited(), "the child must be killed, not exit: %v", err)
	}
	fig.printed = len(printed)
	// From here on no request of the child reaches the fake.
	front.Close()

	// What the dead child left: its keys, all live, none deleted.
	marked := map[string]keystest.KeyState{} // by lease ID
	managers := map[string]bool{}
	for _, k := range srv.Keys() {
		mk, err := lease.ParseMarker(k.Key.Comment, k.Key.Tags)
		if err != nil {
			continue
		}
		marked[mk.Lease] = k
		managers[mk.Manager] = true
		assert.Equal(t, keystest.StatusActive, k.Status, "key %s", k.Key.ID)
		assert.Zero(t, k.Deletes, "key %s", k.Key.ID)
	}
	assert.Len(t, managers, 1, "every marker key comes from the child's one Manager")
	for id := range printed {
		assert.Contains(t, marked, id, "lease %s printed by the child has no key", id)
	}
	fig.marked = len(marked)
	fig.unacknowledged = len(marked) - len(printed)
	assert.GreaterOrEqual(t, fig.unacknowledged, crashLostAnswers, "the keys whose answers were lost are there")
	createsNoAnswer := 0
	for _, r := range srv.Requests() {
		if r.Op == keystest.OpCreate && r.Status == 0 {
			createsNoAnswer++
		}
	}
	fig.cutOff = createsNoAnswer - crashLostAnswers
	// Each goroutine of the child has at most one create in flight: at the
	// kill it was cut off (no key) or done but not printed (a key).
	assert.GreaterOrEqual(t, fig.cutOff, 0)
	assert.LessOrEqual(t, fig.cutOff+fig.unacknowledged-crashLostAnswers, crashWorkers)

	// A fresh Manager (the restarted process) sweeps at start-up.
	m := newManager(t, srv.Client())
	n, err := m.Sweep(ctx)
	require.NoError(t, err)
	fig.sweptBefore = n
	assert.Zero(t, n, "Sweep never touches a key before its expiry")

	srv.Advance(crashTTL + lease.DefaultExpiryMargin + time.Second)
	n, err = m.Sweep(ctx)
	require.NoError(t, err)
	fig.swept = n
	assert.Equal(t, len(marked), n, "Sweep deletes every key the dead process left")

	foreignByID := map[string]bool{}
	for _, k := range foreign {
		foreignByID[k.ID] = true
	}
	for _, k := range srv.Keys() {
		_, err := lease.ParseMarker(k.Key.Comment, k.Key.Tags)
		switch {
		case err == nil:
			assert.Equal(t, keystest.StatusDeleted, k.Status, "marker key %s", k.Key.ID)
			assert.Equal(t, 1, k.Deletes, "marker key %s deleted exactly once", k.Key.ID)
		case foreignByID[k.Key.ID] || k.Key.ID == srv.AdminKeyID():
			assert.Zero(t, k.Deletes, "foreign key %s touched", k.Key.ID)
			assert.NotEqual(t, keystest.StatusDeleted, k.Status, "foreign key %s", k.Key.ID)
			if k.Status == keystest.StatusExpired {
				fig.foreignExpired++
			}
		default:
			t.Errorf("unexpected key %s (%q)", k.Key.ID, k.Key.Comment)
		}
	}
	fig.foreign = len(foreign)
	listed, err := srv.Client().List(ctx)
	require.NoError(t, err)
	for _, k := range listed {
		_, err := lease.ParseMarker(k.Comment, k.Tags)
		assert.Error(t, err, "marker key %s still listed", k.ID)
	}
	assert.Len(t, listed, len(foreign)+1, "the foreign keys and the admin key stay listed")
	n, err = m.Sweep(ctx)
	require.NoError(t, err)
	assert.Zero(t, n, "a second Sweep finds nothing")

	t.Logf("%+v", fig)
	if *update && !t.Failed() {
		writeReliabilitySection(t, "crash", crashReport(fig))
	}
}

func crashReport(f crashFigures) string {
	var b strings.Builder
	fmt.Fprintf(&b, `## Crash recovery

Generated by `+"`go test ./lease -run TestCrashRecovery -update`"+` (lease/crash_test.go).

TestCrashRecovery re-executes the test binary as a child process that
acquires leases (TTL %s, server-side expiry TTL + %s margin) from %d
goroutines against a fake Deepgram owned by the parent, over loopback, and
holds them. The child's loopback server is a small front in the parent
that passes each request to the fake in memory: closing it waits for every
request of the dead child to end, so none can reach the fake after the
sweep starts. The fake delays every create by %s, so creates are in flight
when the child dies, and loses the answers of the first %d creates (the key
exists; the child never learns of it). The parent seeds %d foreign keys
(no valid marker; %d of them expired when the sweep runs; two imitate the
marker),
reads the child's stdout until it has seen %d acquisitions, and kills it
with SIGKILL: no deferred call, no Close, no deletion.

Invariants checked on every run (the test fails otherwise):

- every lease the child printed has a marker key on the fake, and every
  marker key comes from the child's one Manager, live and never deleted;
- a fresh Manager's Sweep before the keys expire deletes nothing;
- after the fake's clock passes TTL + margin, one Sweep deletes every
  marker key, each exactly once (so none stays live or listed), whether its
  lease was acquired, lost in its answer or cut off in flight;
- every foreign key is untouched (0 deletes; the expired ones stay listed);
- a second Sweep finds nothing.

The counts depend on when the kill lands, so they differ between runs and
are not compared; this section is only rewritten with -update. The run that
wrote it saw:

| figure | this run | bound on every run |
|---|---:|---|
| acquisitions seen when the kill was sent | %d | = %d |
| acquisitions printed by the child in all | %d | >= the line above |
| create requests in flight when the kill was sent | %d | <= %d (one per goroutine) |
| creates cut off by the kill (no answer, no key): *cut* | %d | *cut* + *unprinted* <= %d |
| marker keys whose lease was never printed | %d | = %d lost answers + *unprinted* (keys created, lease not printed) |
| marker keys found after the kill | %d | = printed + never printed |
| deleted by Sweep before the expiry | %d | = 0 |
| deleted by Sweep after the expiry | %d | = marker keys found |
| foreign keys untouched | %d of %d | all |
| child run time until the kill | %s | (not bounded) |
`,
		crashTTL, lease.DefaultExpiryMargin, crashWorkers, crashLatency, crashLostAnswers,
		f.foreign, f.foreignExpired, crashKillAt,
		f.seenAtKill, crashKillAt,
		f.printed,
		f.inFlightAtKill, crashWorkers,
		f.cutOff, crashWorkers,
		f.unacknowledged, crashLostAnswers,
		f.marked,
		f.sweptBefore,
		f.swept,
		f.foreign, f.foreign,
		f.childRun.Round(time.Millisecond))
	return b.String()
}
