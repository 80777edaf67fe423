package keys

import (
	"errors"
	"net/http"
	"sync/atomic"
	"time"
)

// maxIdleConnsPerHost is how many idle connections to one host the
// default HTTP client keeps for reuse; http.DefaultTransport keeps 2.
//
// Over HTTP/1.1 every request in flight holds a connection of its own, and
// a connection handed back while the idle pool is full is closed: the next
// request pays a new TCP and TLS handshake with Deepgram. A lease.Manager
// may delete 512 keys at once (lease.DefaultDeleteConcurrency) while its
// callers create keys, so the pool holds a full deleter plus as many
// creates. A pool costs nothing until concurrency fills it, and idle
// connections close after IdleConnTimeout (90 s). Over HTTP/2 (attempted
// whenever the server offers it) requests share connections instead.
const maxIdleConnsPerHost = 1024

// net/http's DefaultTransport values, for a stock transport that has none.
const (
	idleConnTimeout     = 90 * time.Second
	tlsHandshakeTimeout = 10 * time.Second
)

// defaultHTTPClient is the HTTP client of a [Client] built without
// [WithHTTPClient]: each call bounded by [DefaultTimeout], sent through
// [defaultTransport].
func defaultHTTPClient() *http.Client {
	return &http.Client{Timeout: DefaultTimeout, Transport: defaultTransport{}}
}

// defaultTransport sends through http.DefaultTransport as the program has
// it at the time of each call, with one change: the *http.Transport found
// there on the first call (net/http's own, unless the program put another
// one there before) is replaced by a clone of it, the shared pool, which
// keeps its proxy, dialer, TLS settings and timeouts and sizes its idle
// pool for concurrent calls. Whatever the program puts there afterwards
// (httpmock.Activate, a tracing wrapper, another transport) is its choice
// of how HTTP goes out, and is used as it is.
//
// The pool is shared by every Client New builds without WithHTTPClient, as
// http.DefaultTransport's was: Clients made and dropped by the thousand
// still share their connections.
type defaultTransport struct{}

// sharedPool is built on the first call through a defaultTransport.
var sharedPool atomic.Pointer[pool]

// pool is the clone that stands in for stock.
type pool struct {
	stock *http.Transport // the http.DefaultTransport it clones
	t     *http.Transport
}

func (defaultTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	dt := http.DefaultTransport
	stock, ok := dt.(*http.Transport)
	if !ok || stock == nil {
		if dt == nil {
			closeBody(req)
			return nil, errors.New("keys: http.DefaultTransport is nil; pass an HTTP client with WithHTTPClient")
		}
		return dt.RoundTrip(req)
	}
	p := sharedPool.Load()
	if p == nil {
		sharedPool.CompareAndSwap(nil, newPool(stock))
		p = sharedPool.Load()
	}
	if p.stock != stock {
		return stock.RoundTrip(req)
	}
	return p.t.RoundTrip(req)
}

// newPool clones stock with an idle pool sized by maxIdleConnsPerHost and
// HTTP/2 attempted. Everything else (proxy from the environment, dialer,
// TLS settings, timeouts) is stock's, net/http's defaults filling the
// idle and handshake timeouts stock leaves at zero.
func newPool(stock *http.Transport) *pool {
	t := stock.Clone()
	t.MaxIdleConnsPerHost = maxIdleConnsPerHost
	if t.MaxIdleConns != 0 && t.MaxIdleConns < maxIdleConnsPerHost {
		t.MaxIdleConns = maxIdleConnsPerHost // net/http's 100 would cap the pool below
	}
	t.ForceAttemptHTTP2 = true
	// A transport a program built itself may have no timeouts: idle
	// connections would then live forever and a stalled handshake would
	// hold a connection until the call's timeout.
	if t.IdleConnTimeout == 0 {
		t.IdleConnTimeout = idleConnTimeout
	}
	if t.TLSHandshakeTimeout == 0 {
		t.TLSHandshakeTimeout = tlsHandshakeTimeout
	}
	return &pool{stock: stock, t: t}
}

// closeBody closes req's body, as a RoundTripper must, also on error.
func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
