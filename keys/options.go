package keys

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultHost is the Deepgram API base URL used unless [WithHost] says
// otherwise.
const DefaultHost = "https://api.deepgram.com"

// DefaultTimeout bounds each call made with the default HTTP client.
const DefaultTimeout = 30 * time.Second

// Option configures a [Client] built by [New]. Options are sealed: only this
// package defines them.
//
// Options are immutable values, safe to share and reuse across goroutines.
type Option interface{ apply(*options) error }

type options struct {
	host       *url.URL
	httpClient *http.Client
	userAgent  string
}

type optionFunc func(*options) error

func (f optionFunc) apply(o *options) error { return f(o) }

// WithHost points the client at baseURL instead of [DefaultHost]:
// "https://host[:port]" or, for a local fake, "http://127.0.0.1:port". A
// path, query or fragment is refused, since Deepgram's SDK drops them.
// The DEEPGRAM_HOST environment variable is never read.
func WithHost(baseURL string) Option {
	return optionFunc(func(o *options) error {
		u, err := parseHost(baseURL)
		if err != nil {
			return err
		}
		o.host = u
		return nil
	})
}

func parseHost(baseURL string) (*url.URL, error) {
	if strings.Contains(baseURL, "@") {
		// Checked before anything quotes baseURL: user info may be a key.
		return nil, errors.New("keys: host must not carry user info (no @ in the URL); pass the API key to New")
	}
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("keys: host %q is not a URL: %w", baseURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("keys: host %q must start with https:// (or http:// for a local fake)", baseURL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("keys: host %q has no host name", baseURL)
	}
	if strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("keys: host %q must not have a path, query or fragment", baseURL)
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}, nil
}

// WithHTTPClient makes the client send its requests through hc: use it for
// custom transports, proxies, timeouts or an in-memory fake
// (keystest.Server.Transport). hc is used as it is, never modified: its
// Transport (http.DefaultTransport when nil) is wrapped to read answers,
// and redirects are answered, not followed, unless hc has a CheckRedirect
// of its own.
//
// The default is an http.Client with a [DefaultTimeout] timeout and TLS
// verification on, whose connections are shared by the Clients built
// without this option: a clone of http.DefaultTransport (its proxy from
// the environment, dialer and TLS settings) that attempts HTTP/2 and keeps
// up to 1,024 idle connections per host. http.DefaultTransport keeps 2, so
// calls made while others are in flight would each open a connection, a
// TCP and TLS handshake. A program that replaces http.DefaultTransport
// (httpmock.Activate, a tracing wrapper) is obeyed: the default client
// then sends through it.
func WithHTTPClient(hc *http.Client) Option {
	return optionFunc(func(o *options) error {
		if hc == nil {
			return errors.New("keys: WithHTTPClient needs a non-nil *http.Client")
		}
		o.httpClient = hc
		return nil
	})
}

// WithUserAgent puts product (e.g. "myapp/1.2") in front of the
// User-Agent header. Default: the library's and the SDK's names only.
func WithUserAgent(product string) Option {
	return optionFunc(func(o *options) error {
		if strings.ContainsAny(product, "\r\n") {
			return errors.New("keys: user agent must not contain line breaks")
		}
		o.userAgent = strings.TrimSpace(product)
		return nil
	})
}
