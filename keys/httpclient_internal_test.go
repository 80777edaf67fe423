package keys

import (
	"crypto/tls"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDefaultHTTPClient(t *testing.T) {
	hc := defaultHTTPClient()
	assert.Equal(t, DefaultTimeout, hc.Timeout)
	assert.Equal(t, defaultTransport{}, hc.Transport)
	assert.Nil(t, hc.CheckRedirect, "New sets the one that refuses redirects")
}

func TestPoolClonesStockAndSizesIt(t *testing.T) {
	stock, ok := http.DefaultTransport.(*http.Transport)
	require.True(t, ok, "net/http's DefaultTransport is an *http.Transport")
	p := newPool(stock)
	assert.Same(t, stock, p.stock)
	assert.NotSame(t, stock, p.t, "a clone: the program's transport is not changed")
	assert.Zero(t, stock.MaxIdleConnsPerHost, "stock left alone")
	assert.Equal(t, maxIdleConnsPerHost, p.t.MaxIdleConnsPerHost)
	assert.GreaterOrEqual(t, p.t.MaxIdleConns, maxIdleConnsPerHost, "the total cap does not undo the per-host one")
	assert.True(t, p.t.ForceAttemptHTTP2)
	assert.NotNil(t, p.t.Proxy, "proxy from the environment, as stock")
	assert.NotNil(t, p.t.DialContext, "stock's dialer and its timeouts")
	assert.Equal(t, stock.TLSHandshakeTimeout, p.t.TLSHandshakeTimeout)
	assert.Equal(t, stock.IdleConnTimeout, p.t.IdleConnTimeout)
	if p.t.TLSClientConfig != nil { // set up for HTTP/2 by Clone
		assert.False(t, p.t.TLSClientConfig.InsecureSkipVerify, "TLS verified")
	}
}

func TestPoolOfABareTransport(t *testing.T) {
	proxy := func(*http.Request) (*url.URL, error) { return nil, nil }
	bare := &http.Transport{Proxy: proxy, MaxIdleConns: 10, TLSClientConfig: &tls.Config{ServerName: "x"}}
	p := newPool(bare)
	assert.Equal(t, maxIdleConnsPerHost, p.t.MaxIdleConns, "a total cap below the per-host one is raised")
	assert.Equal(t, 90*time.Second, p.t.IdleConnTimeout, "idle connections do not live forever")
	assert.Equal(t, 10*time.Second, p.t.TLSHandshakeTimeout)
	assert.Equal(t, "x", p.t.TLSClientConfig.ServerName, "the program's TLS settings are kept")
	assert.NotNil(t, p.t.Proxy)

	unbounded := newPool(&http.Transport{})
	assert.Zero(t, unbounded.t.MaxIdleConns, "no total cap stays none")
}
