package keys_test

import (
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jarcoal/httpmock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dglease/dglease/internal/testenv"
	"github.com/dglease/dglease/keys"
)

func TestMain(m *testing.M) {
	testenv.ClearDeepgramProcess() // no test may be redirected by, or reach, real Deepgram
	goleak.VerifyTestMain(m)
}

// Test fixtures. The API key and the new key's secret are distinctive so
// that any leak into output, logs or errors is easy to find.
const (
	testHost    = "https://dg.test"
	testAPIKey  = "0badc0de0badc0de0badc0de0badc0de0badc0d"
	testProject = "proj-123"
	newSecret   = "deadbeefcafebabe0123456789abcdef00c0ffee"
	testJWT     = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJncmFudCJ9.c2lnbmF0dXJlLXRlc3Q"
	keysURL     = testHost + "/v1/projects/" + testProject + "/keys"
	grantURL    = testHost + "/v1/auth/grant"
	projectsURL = testHost + "/v1/projects"
	createdJSON = "2025-01-02T03:04:05.123Z"
	expiresJSON = "2025-01-02T03:05:05Z"
)

// request is what a responder saw of one request.
type request struct {
	Method string
	URL    *url.URL
	Header http.Header
	Body   []byte
}

// String names the request without its headers, which hold the API key:
// testify prints requests this way, e.g. when require.Len fails.
func (r request) String() string { return r.Method + " " + r.URL.String() }

// recorder keeps every request its responders see.
type recorder struct {
	mu   sync.Mutex
	reqs []request
}

func (r *recorder) wrap(resp httpmock.Responder) httpmock.Responder {
	return func(req *http.Request) (*http.Response, error) {
		var body []byte
		if req.Body != nil {
			body, _ = io.ReadAll(req.Body)
		}
		r.mu.Lock()
		r.reqs = append(r.reqs, request{Method: req.Method, URL: req.URL, Header: req.Header.Clone(), Body: body})
		r.mu.Unlock()
		return resp(req)
	}
}

func (r *recorder) all() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]request(nil), r.reqs...)
}

func (r *recorder) only(t *testing.T) request {
	t.Helper()
	all := r.all()
	require.Len(t, all, 1, "requests seen")
	return all[0]
}

// newMock returns a mock transport that fails the test on any request no
// responder was registered for.
func newMock(t *testing.T) *httpmock.MockTransport {
	t.Helper()
	mock := httpmock.NewMockTransport()
	mock.RegisterNoResponder(func(req *http.Request) (*http.Response, error) {
		t.Errorf("unexpected request %s %s", req.Method, req.URL)
		return nil, errors.New("unexpected request")
	})
	return mock
}

// newClient clears the environment and returns a client for testProject
// (or project discovery when project is "") talking to testHost through a
// fresh mock.
func newClient(t *testing.T, project string, opts ...keys.Option) (*keys.Client, *httpmock.MockTransport) {
	t.Helper()
	mock := newMock(t)
	all := append([]keys.Option{keys.WithHost(testHost), keys.WithHTTPClient(&http.Client{Transport: mock})}, opts...)
	c, err := keys.New(testAPIKey, project, all...)
	require.NoError(t, err)
	return c, mock
}

// jsonResponder answers status with body and an application/json type.
func jsonResponder(status int, body string) httpmock.Responder {
	return func(*http.Request) (*http.Response, error) {
		res := httpmock.NewStringResponse(status, body)
		res.Header.Set("Content-Type", "application/json")
		return res, nil
	}
}

// createAnswer is Deepgram's 200 answer to a create.
func createAnswer(id string) string {
	b, _ := json.Marshal(map[string]any{
		"api_key_id":      id,
		"key":             newSecret,
		"comment":         "stream for user 42",
		"scopes":          []string{"usage:write"},
		"tags":            []string{"dglease", "user-42"},
		"created":         createdJSON,
		"expiration_date": expiresJSON,
	})
	return string(b)
}

// assertCommonHeaders checks the headers every call must carry.
func assertCommonHeaders(t *testing.T, req request) {
	t.Helper()
	// Compared without testify's diff, which would print the API key.
	auth := req.Header.Values("Authorization")
	assert.True(t, len(auth) == 1 && auth[0] == "token "+testAPIKey, "want one Authorization header, \"token \" and the API key; got %d", len(auth))
	assert.Equal(t, "application/json", req.Header.Get("Content-Type"), "Content-Type")
	assert.True(t, strings.HasPrefix(req.Header.Get("User-Agent"), "dglease/"+keys.Version+" "),
		"User-Agent %q starts with dglease/%s", req.Header.Get("User-Agent"), keys.Version)
}

// bodyFields decodes a JSON object body.
func bodyFields(t *testing.T, body []byte) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(body, &m), "body %s", body)
	return m
}

func fieldNames(m map[string]json.RawMessage) []string {
	return slices.Sorted(maps.Keys(m))
}

// recordOne returns a client for project (see newClient) whose only
// responder answers method url with a 200 JSON body, and the recorder of
// what it is sent.
func recordOne(t *testing.T, project, method, url, body string, opts ...keys.Option) (*keys.Client, *recorder) {
	t.Helper()
	c, mock := newClient(t, project, opts...)
	rec := &recorder{}
	mock.RegisterResponder(method, url, rec.wrap(jsonResponder(200, body)))
	return c, rec
}

// assertNoSecret fails if text, described by what, contains the API key,
// the new key's secret or the grant JWT; the failure prints neither.
func assertNoSecret(t *testing.T, what, text string) {
	t.Helper()
	testenv.NoSecret(t, what, text, testAPIKey, newSecret, testJWT)
}
