package keys

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	commonv1 "github.com/deepgram/deepgram-go-sdk/v3/pkg/client/common/v1"
	sdkinterfaces "github.com/deepgram/deepgram-go-sdk/v3/pkg/client/interfaces/v1"
	restv1 "github.com/deepgram/deepgram-go-sdk/v3/pkg/client/rest/v1"
)

// version is this library's version, sent in the User-Agent header.
const version = "0.1.0"

// Client calls Deepgram's key management and grant-token APIs for one
// project. It is built on the official Go SDK's REST client (its
// SetupRequest and Do), configured so that no DEEPGRAM_* environment
// variable can redirect, re-authenticate, un-verify or log its calls, and
// it turns every non-2xx answer into an [*APIError] (the SDK's own
// CreateKey, DeleteKey, ListKeys and GrantToken report failures as
// success).
//
// A Client makes exactly one request per call: it never retries, since a
// retried create can mint two keys. [APIError.RetryAfter] says when to try
// again.
//
// A Client is safe for concurrent use. It prints redacted: the API key
// never appears in fmt output, logs or errors.
type Client struct {
	// apiKey is behind a pointer so that printing a copied Client shows
	// an address, never the key.
	apiKey *string
	host   string
	// rest sends every call: its SetupRequest sets the SDK's headers and
	// auth, its Do sends and checks the status. The URL is built here,
	// not by the SDK's APIRequest, which compiles two regular expressions
	// on every call: about half of the CPU a create+delete pair took.
	rest *commonv1.RESTClient
	// discover serialises project discovery; a one-slot semaphore so that
	// waiting callers can give up with their context.
	discover  chan struct{}
	projectID atomic.Pointer[string]
}

// New returns a client that authenticates with apiKey ("Authorization:
// Token ...") and manages the keys of projectID. With projectID empty, the
// project is discovered on first use from GET /v1/projects: the API key must
// see exactly one project.
//
// New makes no network call. It reads no environment variable: pass the API
// key explicitly (e.g. os.Getenv("DEEPGRAM_API_KEY")).
func New(apiKey, projectID string, opts ...Option) (*Client, error) {
	if apiKey == "" {
		return nil, errors.New("keys: API key must not be empty (pass it to keys.New; the library never reads DEEPGRAM_API_KEY itself)")
	}
	if strings.TrimSpace(apiKey) != apiKey || strings.ContainsFunc(apiKey, func(r rune) bool { return r < 0x21 || r == 0x7f }) {
		return nil, errors.New("keys: API key must not contain spaces or control characters")
	}
	if projectID != "" {
		if err := checkID("project ID", projectID); err != nil {
			return nil, err
		}
	}
	o := options{}
	for _, opt := range opts {
		if opt == nil {
			return nil, errors.New("keys: nil Option")
		}
		if err := opt.apply(&o); err != nil {
			return nil, err
		}
	}
	if o.host == nil {
		o.host, _ = parseHost(DefaultHost)
	}
	hc := o.httpClient
	if hc == nil {
		hc = defaultHTTPClient()
	}
	hcCopy := *hc
	hcCopy.Transport = &captureTransport{base: hc.Transport}
	if hcCopy.CheckRedirect == nil {
		// A redirect is answered as it is (an *APIError), never followed:
		// no call may be steered to another host.
		hcCopy.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}

	ua := "dglease/" + version + " " + sdkinterfaces.DgAgent
	if o.userAgent != "" {
		ua = o.userAgent + " " + ua
	}
	// The SDK's constructors call ClientOptions.Parse, which lets
	// DEEPGRAM_HOST, DEEPGRAM_ACCESS_TOKEN, DEEPGRAM_API_VERSION,
	// DEEPGRAM_API_PATH and DEEPGRAM_WEBSOCKET_SKIP_AUTH override explicit
	// settings, and restv1.NewHTTPClient turns on DEEPGRAM_DEBUG_REST
	// logging of headers and bodies. So the SDK's REST client is assembled
	// here from its exported parts: no Parse, no debug container, our
	// transport.
	sdkOpts := &sdkinterfaces.ClientOptions{
		APIKey:     apiKey,
		Host:       o.host.String(),
		APIVersion: "v1",
	}
	rest := &commonv1.RESTClient{Client: &restv1.Client{
		HTTPClient: &restv1.HTTPClient{Client: hcCopy, UserAgent: ua},
		Options:    sdkOpts,
	}}
	c := &Client{
		apiKey:   &apiKey,
		discover: make(chan struct{}, 1),
		host:     o.host.String(),
		rest:     rest,
	}
	if projectID != "" {
		c.projectID.Store(&projectID)
	}
	return c, nil
}

// project returns the project ID if known, else "".
func (c *Client) project() string {
	if p := c.projectID.Load(); p != nil {
		return *p
	}
	return ""
}

// Host returns the base URL the client talks to.
func (c *Client) Host() string { return c.host }

// String describes the client with its API key redacted.
func (c *Client) String() string {
	p := c.project()
	return fmt.Sprintf("keys.Client{Host:%q Project:%q APIKey:%q}", c.host, p, redacted)
}

// Format prints the redacted description for every verb, %#v included.
func (c *Client) Format(f fmt.State, verb rune) { formatRedacted(f, verb, c.String()) }

// LogValue implements [slog.LogValuer]: the API key is redacted.
func (c *Client) LogValue() slog.Value {
	p := c.project()
	return slog.GroupValue(slog.String("host", c.host), slog.String("project", p), slog.String("api_key", redacted))
}

// checkID refuses IDs that cannot be put into a URL path as they are.
func checkID(what, id string) error {
	if id == "" {
		return fmt.Errorf("keys: %s must not be empty", what)
	}
	if len(id) > 256 {
		return fmt.Errorf("keys: %s is %d bytes long; Deepgram IDs are short", what, len(id))
	}
	for _, r := range id {
		if r <= ' ' || r == 0x7f || strings.ContainsRune("/?#%\\", r) || r > 0x7e {
			return fmt.Errorf("keys: %s %q contains %q, which cannot be part of a URL path", what, id, r)
		}
	}
	return nil
}

// answerID checks an ID read from an answer (what names it) before it is
// printed or handed on: checkID's rule, and no secret in it (the client's
// API key, or secret when not empty), so that no error, event or log that
// names the ID can carry one. Its error quotes nothing of the ID then.
func (c *Client) answerID(what, id, secret string) error {
	if c.scrub(id) != id || (secret != "" && strings.Contains(id, secret)) {
		return fmt.Errorf("keys: %s in the answer holds a secret; it is not shown", what)
	}
	return checkID(what, id)
}

// Project returns the project ID the client manages, discovering it with
// GET /v1/projects when New was given none. Discovery succeeds only when the
// API key sees exactly one project; its result is kept, its failures are not.
func (c *Client) Project(ctx context.Context) (string, error) {
	if p := c.project(); p != "" {
		return p, nil
	}
	if ctx == nil {
		return "", errors.New("keys: list projects: nil context")
	}
	select {
	case c.discover <- struct{}{}:
		defer func() { <-c.discover }()
	case <-ctx.Done():
		return "", fmt.Errorf("keys: list projects: %w", ctx.Err())
	}
	if p := c.project(); p != "" {
		return p, nil
	}
	var out struct {
		Projects []struct {
			ProjectID string `json:"project_id"`
			Name      string `json:"name"`
		} `json:"projects"`
	}
	if err := c.call(ctx, "list projects", http.MethodGet, "v1/projects", nil, nil, &out); err != nil {
		return "", err
	}
	switch len(out.Projects) {
	case 0:
		return "", errors.New("keys: the API key sees no project; pass a project ID to keys.New")
	case 1:
	default:
		names := make([]string, 0, len(out.Projects))
		for _, p := range out.Projects {
			// Quoted from an answer: scrubbed like any (a server that
			// echoes the API key must not put it in the error).
			names = append(names, fmt.Sprintf("%s (%s)", cleanScrubbed(p.ProjectID, 64, c.scrub), cleanScrubbed(p.Name, 64, c.scrub)))
		}
		return "", fmt.Errorf("keys: the API key sees %d projects; pass one of them to keys.New: %s", len(out.Projects), strings.Join(names, ", "))
	}
	id := out.Projects[0].ProjectID
	if err := c.answerID("discovered project ID", id, ""); err != nil {
		return "", err
	}
	c.projectID.Store(&id)
	return id, nil
}

// call sends one request: method to path (relative to the host and
// starting with the API version, e.g. "v1/projects/%s/keys", each %s
// filled in turn from params, which are escaped for a URL path as the
// SDK's APIRequest escapes them) with query, body encoded as JSON, and
// decodes a 2xx answer into out. Every non-2xx answer is an *APIError.
//
// The request is built by the SDK's SetupRequest and sent by its Do; the
// answer is decoded here from what captureTransport saw: the SDK closes
// error bodies, parses only one error shape and logs answer bodies (new
// secrets) at klog verbosity 5, so it is handed an empty body instead.
func (c *Client) call(ctx context.Context, op string, method, path string, query map[string][]string, body any, out any, params ...any) error {
	if ctx == nil {
		return fmt.Errorf("keys: %s: nil context", op)
	}
	if err := ctx.Err(); err != nil {
		// Not every RoundTripper checks the context before sending.
		return fmt.Errorf("keys: %s: %w", op, err)
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("keys: %s: encoding request: %w", op, err)
		}
		rd = bytes.NewReader(b)
	}
	capt := &capture{}
	ctx = context.WithValue(ctx, captureKey{}, capt)
	req, err := c.rest.SetupRequest(ctx, method, c.url(path, query, params), rd)
	if err != nil {
		return fmt.Errorf("keys: %s: %w", op, scrubbed{err: err, text: c.scrub(err.Error())})
	}
	// io.Discard: the SDK copies a 2xx body there (captureTransport left it
	// empty) instead of decoding and logging it.
	sdkErr := c.rest.Do(ctx, req, io.Discard)
	if capt.status == 0 {
		if sdkErr == nil {
			sdkErr = errors.New("no answer")
		}
		if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(sdkErr, ctxErr) {
			return fmt.Errorf("keys: %s: %w (%v)", op, ctxErr, c.scrub(sdkErr.Error()))
		}
		return fmt.Errorf("keys: %s: %w", op, scrubbed{err: sdkErr, text: c.scrub(sdkErr.Error())})
	}
	if capt.readErr != nil {
		return fmt.Errorf("keys: %s: reading answer (status %d): %w", op, capt.status, capt.readErr)
	}
	if capt.status < 200 || capt.status > 299 {
		// parseError scrubs each text before cutting it short (a key cut
		// in two would no longer be found), after JSON unescaping; every
		// field ends up in Error().
		e := parseError(capt.status, capt.header, capt.body, time.Now(), c.scrub)
		e.Op = op
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(capt.body, out); err != nil {
		return fmt.Errorf("keys: %s: deepgram answered %d with a body that is not the expected JSON: %w", op, capt.status, err)
	}
	return nil
}

// url returns the URL of path with params and query, as the SDK's
// APIRequest builds it for an explicit host: the same escaping, query
// parameters sorted by name.
func (c *Client) url(path string, query map[string][]string, params []any) string {
	if len(params) > 0 {
		path = fmt.Sprintf(path, params...)
	}
	u := url.URL{Path: "/" + path}
	s := c.host + u.EscapedPath()
	if len(query) > 0 {
		s += "?" + url.Values(query).Encode()
	}
	return s
}

// scrub removes the client's API key from s.
func (c *Client) scrub(s string) string {
	return strings.ReplaceAll(s, *c.apiKey, redacted)
}

// scrubbed wraps a transport error whose text may need the API key removed,
// while keeping errors.Is/As on the original.
type scrubbed struct {
	err  error
	text string
}

func (s scrubbed) Error() string { return s.text }
func (s scrubbed) Unwrap() error { return s.err }
