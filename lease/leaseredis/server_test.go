package leaseredis_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/internal/testenv"
	"github.com/dglease/dglease/lease"
	"github.com/dglease/dglease/lease/leaseredis"
)

// redisServer is a real redis-server on a free loopback port, without
// persistence, started by the test and stopped when it ends.
type redisServer struct {
	t    testing.TB
	port int
	cmd  *exec.Cmd
}

// startRedis starts redis-server, or skips the test when the binary is
// absent (fails it under DGLEASE_REQUIRE_TOOLS=1, set by .ci/run, which installs it).
func startRedis(t testing.TB) *redisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		testenv.Missing(t, "redis-server is not installed (apt-get install redis-server); CI installs it from .ci/packages")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	s := &redisServer{t: t, port: port}
	s.start()
	t.Cleanup(s.kill)
	return s
}

func (s *redisServer) addr() string { return fmt.Sprintf("127.0.0.1:%d", s.port) }

// start runs redis-server and returns once it says it accepts connections.
func (s *redisServer) start() {
	s.t.Helper()
	cmd := exec.Command("redis-server", "--port", fmt.Sprint(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.t.TempDir(), "--loglevel", "notice")
	out, err := cmd.StdoutPipe()
	require.NoError(s.t, err)
	require.NoError(s.t, cmd.Start())
	s.cmd = cmd
	ready := false
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "Ready to accept connections") {
			ready = true
			break
		}
	}
	require.True(s.t, ready, "redis-server did not start")
	go func() { // drain the rest of its log; ends when it exits
		for sc.Scan() {
		}
	}()
}

// kill ends redis-server at once (SIGKILL), as a crash would.
func (s *redisServer) kill() {
	if s.cmd != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}

// Four replicas, 50 goroutines each, hammer one user limited to 10 a
// minute: exactly 10 are admitted in total, not 40.
func TestRealRedisRateHoldsAcrossReplicas(t *testing.T) {
	rs := startRedis(t)
	f := newFleet(t, rs.addr(), 4, nil, lease.WithRateLimit(time.Minute, 10), lease.WithMaxLeases(1000, 1000))
	kept, refused := f.hammer("alice", 50)
	for _, l := range kept {
		l.Release()
	}
	assert.Len(t, kept, 10, "admitted across 4 replicas")
	assert.Equal(t, map[lease.Limit]int{lease.LimitRate: 190}, refused)
	f.flush()
	u, err := f.limiters[3].Usage(context.Background(), "alice")
	require.NoError(t, err)
	assert.Equal(t, lease.Usage{Acquired: 10, Released: 10, Denied: 190}, u)
}

// Four replicas, 50 goroutines each, all try to acquire a lease for one
// user at once and keep it, under a per-user cap of 3: exactly 3 are
// admitted across the replicas, and every other attempt is refused by the
// cap. Once they are released, the next round admits exactly 3 again.
func TestRealRedisCapHoldsAcrossReplicas(t *testing.T) {
	rs := startRedis(t)
	f := newFleet(t, rs.addr(), 4, nil, lease.WithRateLimit(0, 1), lease.WithMaxLeases(1000, 3))
	for round := range 3 {
		kept, refused := f.hammer("alice", 50)
		assert.Len(t, kept, 3, "round %d: live leases of the user across the replicas", round)
		assert.Equal(t, map[lease.Limit]int{lease.LimitUserCap: 197}, refused, "round %d", round)
		for _, l := range kept {
			l.Release()
		}
		f.flush()
	}
}

// redis-server killed mid-run and started again: fail-closed replicas
// create no key while it is down, fail-open replicas admit under local
// limits, both recover without a restart, and afterwards every key is
// deleted and every count adds up.
func TestRealRedisKilledAndRestarted(t *testing.T) {
	rs := startRedis(t)
	opts := []lease.Option{lease.WithRateLimit(time.Minute, 100), lease.WithMaxLeases(1000, 100)}
	closed := newFleet(t, rs.addr(), 1, []leaseredis.Option{leaseredis.WithTimeout(300 * time.Millisecond)}, opts...)
	open := newFleet(t, rs.addr(), 1, []leaseredis.Option{leaseredis.WithFailOpen(), leaseredis.WithTimeout(300 * time.Millisecond)}, opts...)
	acquire := func(f *fleet, user string) error {
		l, err := f.managers[0].Acquire(context.Background(), user)
		if err == nil {
			l.Release()
		}
		return err
	}
	require.NoError(t, acquire(closed, "alice"))
	require.NoError(t, acquire(open, "bob"))

	rs.kill()
	keysBefore := len(closed.srv.Keys())
	err := acquire(closed, "alice")
	assert.ErrorContains(t, err, "the limiter is unavailable, so no credential was created")
	assert.Equal(t, keysBefore, len(closed.srv.Keys()), "no key created while Redis is down (fail closed)")
	assert.Equal(t, int64(1), closed.final.Load())
	require.NoError(t, acquire(open, "bob"), "fail open: admitted by the in-process limiter")
	assert.Positive(t, open.errs.Load())

	rs.start()
	require.NoError(t, acquire(closed, "alice"), "back without restarting the Manager")
	require.NoError(t, acquire(open, "bob"))
	closed.flush()
	open.flush()
	for _, f := range []*fleet{closed, open} {
		m := f.managers[0]
		st := m.Stats()
		assert.Zero(t, st.Live)
		assert.Equal(t, st.Acquired, st.Released)
		assert.Equal(t, st.Acquired, st.Deleted, "every key deleted")
		assert.Zero(t, st.DeleteFailed)
		assert.Len(t, f.srv.LiveKeys(), 1, "only the admin key is left")
	}
	assert.Equal(t, uint64(2), closed.managers[0].Stats().Acquired)
	assert.Equal(t, uint64(3), open.managers[0].Stats().Acquired)
	u, err := closed.limiters[0].Usage(context.Background(), "alice")
	require.NoError(t, err)
	assert.Equal(t, lease.Usage{Acquired: 1, Released: 1}, u, "Redis restarted empty: its counters start over")
}
