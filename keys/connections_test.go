package keys_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/keys"
	"github.com/dglease/dglease/keys/keystest"
)

// loopbackFake serves a keystest fake over a real loopback listener and
// counts the connections clients open to it.
type loopbackFake struct {
	fake     *keystest.Server
	http     *httptest.Server
	newConns atomic.Int64
}

// callLatency is how long the fake waits before it serves a create or a
// delete: a round trip, so that callers overlap as they do against
// Deepgram (where it is tens of milliseconds), and requests are in flight
// at once.
const callLatency = 2 * time.Millisecond

// startLoopbackFake starts one for tb; both servers close when tb ends.
// The fake runs in memory (keystest.Server.Transport) behind a reverse
// proxy, since it does not expose the listener of its own.
func startLoopbackFake(tb testing.TB) *loopbackFake {
	tb.Helper()
	f := &loopbackFake{fake: keystest.NewServer(tb, keystest.WithoutListener())}
	f.fake.SetLatency(keystest.OpCreate, callLatency)
	f.fake.SetLatency(keystest.OpDelete, callLatency)
	target, err := url.Parse(f.fake.URL)
	require.NoError(tb, err)
	proxy := &httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(target) },
		Transport: f.fake.Transport(),
		ErrorLog:  log.New(io.Discard, "", 0),
	}
	f.http = httptest.NewUnstartedServer(proxy)
	f.http.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			f.newConns.Add(1)
		}
	}
	f.http.Start()
	tb.Cleanup(f.http.Close) // before the fake's own Close (cleanups run last first)
	return f
}

// client returns a keys.Client for the fake over the loopback listener.
func (f *loopbackFake) client(tb testing.TB, opts ...keys.Option) *keys.Client {
	tb.Helper()
	c, err := keys.New(f.fake.AdminKey(), f.fake.ProjectID(), append([]keys.Option{keys.WithHost(f.http.URL)}, opts...)...)
	require.NoError(tb, err)
	return c
}

// runPairs creates and deletes n keys with c from callers goroutines at
// once, and returns the first error.
func runPairs(c *keys.Client, callers, n int) error {
	spec := keys.Spec{Comment: "connections", Scopes: []string{"usage:write"}, TTL: time.Minute}
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for range callers {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				k, err := c.Create(context.Background(), spec)
				if err == nil {
					err = c.Delete(context.Background(), k.ID)
				}
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
			}
		})
	}
	wg.Wait()
	return firstErr
}

// newConnsPerPair warms c up with 4 pairs per caller, then returns the new
// connections f saw per create+delete pair over n more.
func newConnsPerPair(tb testing.TB, f *loopbackFake, c *keys.Client, callers, n int) float64 {
	tb.Helper()
	require.NoError(tb, runPairs(c, callers, 4*callers), "warm-up")
	before := f.newConns.Load()
	require.NoError(tb, runPairs(c, callers, n))
	return float64(f.newConns.Load()-before) / float64(n)
}

// stockTransport behaves as http.DefaultTransport (2 idle connections per
// host), with a pool of its own that the caller closes.
func stockTransport(tb testing.TB) *http.Transport {
	tb.Helper()
	stock, ok := http.DefaultTransport.(*http.Transport)
	require.True(tb, ok, "http.DefaultTransport is net/http's")
	tr := stock.Clone()
	tb.Cleanup(tr.CloseIdleConnections)
	return tr
}

// oldDefaultClient is the HTTP client keys.New used to build: a
// [keys.DefaultTimeout] timeout and a transport that behaves as
// http.DefaultTransport. (The timeout matters to the count: without it, at
// 16 callers, the stock transport opened about 0.06 connections per pair
// here, against 0.9 with it, which is what users of the old default met.)
func oldDefaultClient(tb testing.TB) keys.Option {
	return keys.WithHTTPClient(&http.Client{Transport: stockTransport(tb), Timeout: keys.DefaultTimeout})
}

// The default client reuses its connections when callers overlap: after
// warm-up, almost no create or delete opens a connection (each a TCP and,
// against Deepgram, a TLS handshake). A count of connections, not a
// stopwatch. See BenchmarkNewConnections for the figures.
func TestDefaultClientReusesConnections(t *testing.T) {
	const callers, pairs = 16, 400
	f := startLoopbackFake(t)
	got := newConnsPerPair(t, f, f.client(t), callers, pairs)
	assert.Less(t, got, 0.05, "new connections per create+delete pair at %d callers", callers)

	// The control: the same load through the old default client opens
	// connections (about one per pair), so the count above can see churn.
	old := startLoopbackFake(t)
	before := newConnsPerPair(t, old, old.client(t, oldDefaultClient(t)), callers, pairs)
	assert.Greater(t, before, 0.3, "new connections per pair through http.DefaultTransport's settings at %d callers", callers)
	t.Logf("new connections per pair at %d callers: %.3f (http.DefaultTransport: %.3f)", callers, got, before)
}

// A client brought with WithHTTPClient is used as it is: its transport's
// pool, not the default one.
func TestWithHTTPClientKeepsItsTransport(t *testing.T) {
	f := startLoopbackFake(t)
	var dials atomic.Int64
	tr := stockTransport(t)
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return dial(ctx, network, addr)
	}
	c := f.client(t, keys.WithHTTPClient(&http.Client{Transport: tr}))
	require.NoError(t, runPairs(c, 1, 3))
	assert.Equal(t, int64(1), dials.Load(), "one connection, dialled by the caller's transport")
	assert.Equal(t, int64(1), f.newConns.Load())
}

// A program that replaced http.DefaultTransport with an *http.Transport of
// its own (a proxy, a dialer, root CAs) is obeyed by the default client,
// whether it did so before or after the client's first call.
func TestDefaultClientUsesAReplacedDefaultTransport(t *testing.T) {
	f := startLoopbackFake(t)
	c := f.client(t)
	require.NoError(t, runPairs(c, 1, 1), "first call through the default transport")

	var dials atomic.Int64
	tr := stockTransport(t)
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return dial(ctx, network, addr)
	}
	old := http.DefaultTransport
	http.DefaultTransport = tr
	t.Cleanup(func() { http.DefaultTransport = old })

	require.NoError(t, runPairs(c, 1, 2))
	assert.Equal(t, int64(1), dials.Load(), "sent through the program's transport")
}

func TestDefaultClientWithNilDefaultTransport(t *testing.T) {
	old := http.DefaultTransport
	http.DefaultTransport = nil
	t.Cleanup(func() { http.DefaultTransport = old })

	c, err := keys.New(testAPIKey, testProject, keys.WithHost(testHost))
	require.NoError(t, err)
	err = c.Delete(context.Background(), "key-1")
	require.Error(t, err, "an error, not a panic")
	assertKeysError(t, err, "delete key", "http.DefaultTransport is nil")
}

// BenchmarkNewConnections reports the connections opened per create+delete
// pair (new-conns/op) after warm-up, over a real loopback listener, by
// keys.Client with the default HTTP client and with the one it had before
// (oldDefaultClient, with http.DefaultTransport's pool), at 1, 16 and 256
// callers. Each create and delete
// waits callLatency on the server, so ns/op (wall time per pair) is mostly
// that wait divided among the callers.
//
//	go test -run '^$' -bench NewConnections -benchtime 2000x ./keys/
func BenchmarkNewConnections(b *testing.B) {
	for _, transport := range []string{"stock", "default"} {
		for _, callers := range []int{1, 16, 256} {
			b.Run(fmt.Sprintf("transport=%s/callers=%d", transport, callers), func(b *testing.B) {
				f := startLoopbackFake(b)
				var opts []keys.Option
				if transport == "stock" {
					opts = append(opts, oldDefaultClient(b))
				}
				c := f.client(b, opts...)
				require.NoError(b, runPairs(c, callers, 4*callers), "warm-up")
				before := f.newConns.Load()
				b.ResetTimer()
				if err := runPairs(c, callers, b.N); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				b.ReportMetric(float64(f.newConns.Load()-before)/float64(b.N), "new-conns/op")
			})
		}
	}
}
