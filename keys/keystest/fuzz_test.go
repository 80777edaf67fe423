package keystest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/internal/testenv"
	"github.com/dglease/dglease/keys"
	"github.com/dglease/dglease/keys/keystest"
)

// Routes FuzzRequestDecoding aims at (its route argument, modulo
// fuzzRoutes).
const (
	fuzzCreate  = iota // POST /v1/projects/{id}/keys
	fuzzGrant          // POST /v1/auth/grant
	fuzzList           // GET /v1/projects/{id}/keys?status=...
	fuzzAnyPath        // "/v1/" + path, any method
	fuzzUsage          // GET /v1/projects/{id}/usage?tag=...
	fuzzRoutes
)

// fuzzMethods are the methods a variant may pick instead of the route's
// own (index 0).
var fuzzMethods = []string{"", "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"}

// FuzzRequestDecoding sends arbitrary bodies, paths, queries, methods and
// Authorization headers to the fake's create, grant, list and usage endpoints
// through Server.Transport. Whatever the input, the fake never panics and
// always answers: a status the package doc lists (413 only for a body over
// 1 MiB), a JSON object body in the success shape of the call it served or
// in the error shape of its endpoint, with its dg-request-id. A 200 create
// adds exactly one key, which then lists; any other answer adds none.
//
// variant packs: bits 0-2 the method (0: the route's own), bits 3-4 the
// Authorization header (valid "Token", valid lower-case "token", "Bearer"
// with the admin key, none), bit 5 puts path in place of the project ID,
// bit 6 sends query as the raw query instead of as the status (list) or
// tag (usage) value.
func FuzzRequestDecoding(f *testing.F) {
	seeds := []struct {
		route, variant uint8
		path, query    string
		body           string
	}{
		{fuzzCreate, 0, "", "", `{"comment":"c","scopes":["usage:write"],"tags":["t"],"time_to_live_in_seconds":60}`},
		{fuzzCreate, 0, "", "", `{"scopes":["usage:write"],"expiration_date":"2999-01-01T00:00:00Z"}`},
		{fuzzCreate, 0, "", "", `{"scopes":["usage:write"],"time_to_live_in_seconds":60,"expiration_date":"2999-01-01T00:00:00Z"}`},
		{fuzzCreate, 0, "", "", `{"scopes":["admin"],"time_to_live_in_seconds":60}`},
		{fuzzCreate, 0, "", "", `{"scopes":[]}`},
		{fuzzCreate, 0, "", "", `{"scopes":["usage:write"]} trailing`},
		{fuzzCreate, 0, "", "", `{"scopes":["usage:write"],"tags":[" "]}`},
		{fuzzCreate, 0, "", "", `{"scopes":["usage:write"],"time_to_live_in_seconds":1e300}`},
		{fuzzCreate, 0, "", "", `null`},
		{fuzzCreate, 0, "", "", ``},
		{fuzzCreate, 1 << 3, "", "", `{"scopes":["usage:write"]}`},
		{fuzzCreate, 2 << 3, "", "", `{"scopes":["usage:write"]}`},
		{fuzzCreate, 3 << 3, "", "", `{"scopes":["usage:write"]}`},
		{fuzzCreate, 1 << 5, "other-project", "", `{"scopes":["usage:write"]}`},
		{fuzzCreate, 4, "", "", `{"scopes":["usage:write"]}`},
		{fuzzGrant, 0, "", "", ``},
		{fuzzGrant, 0, "", "", `{"ttl_seconds":3600}`},
		{fuzzGrant, 0, "", "", `{"ttl_seconds":0}`},
		{fuzzGrant, 0, "", "", `{"ttl_seconds":"30"}`},
		{fuzzGrant, 1, "", "", `{}`},
		{fuzzList, 0, "", "", ``},
		{fuzzList, 0, "", "active", ``},
		{fuzzList, 0, "", "expired", ``},
		{fuzzList, 0, "", "deleted", ``},
		{fuzzList, 1 << 6, "", "status=active&status=expired", ``},
		{fuzzList, 1 << 6, "", "status=%zz", ``},
		{fuzzAnyPath, 0, "projects", "", ``},
		{fuzzAnyPath, 2, "auth/grant/", "", `{}`},
		{fuzzAnyPath, 0, "/listen", "", ``},
		{fuzzAnyPath, 0, "projects/../listen", "", ``},
		{fuzzAnyPath, 4, "projects/p/keys/k", "", ``},
		{fuzzUsage, 0, "", "", ``},
		{fuzzUsage, 0, "", "dglease:user=a%20b", ``},
		{fuzzUsage, 0, "", strings.Repeat("t", 129), ``},
		{fuzzUsage, 1 << 6, "", "start=2025-01-01&end=2025-01-31&accessor=k&method=streaming&endpoint=listen", ``},
		{fuzzUsage, 1 << 6, "", "start=2025-02-01&end=2025-01-01", ``},
		{fuzzUsage, 1 << 6, "", "start=2025-01-01T00:00:00Z&model=nova-3", ``},
		{fuzzUsage, 1 << 3, "", "", `{"tag":["x"]}`},
		{fuzzUsage, 2 << 3, "", "", ``},
	}
	for _, s := range seeds {
		f.Add(s.route, s.variant, s.path, s.query, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, route, variant uint8, path, query string, body []byte) {
		s := keystest.NewServer(t, keystest.WithoutListener())
		project := s.ProjectID()
		if variant&(1<<5) != 0 {
			project = path
		}
		var method, p string
		switch route % fuzzRoutes {
		case fuzzCreate:
			method, p = http.MethodPost, "/v1/projects/"+project+"/keys"
		case fuzzGrant:
			method, p = http.MethodPost, "/v1/auth/grant"
		case fuzzList:
			method, p = http.MethodGet, "/v1/projects/"+project+"/keys"
		case fuzzAnyPath:
			method, p = http.MethodGet, "/v1/"+path
			if p == "/v1/listen" {
				return // the WebSocket endpoint: not request decoding
			}
		case fuzzUsage:
			method, p = http.MethodGet, "/v1/projects/"+project+"/usage"
		}
		if m := fuzzMethods[variant&7]; m != "" {
			method = m
		}
		u := &url.URL{Scheme: "http", Host: "keystest.invalid", Path: p}
		switch {
		case variant&(1<<6) != 0:
			u.RawQuery = query
		case query != "" && route%fuzzRoutes == fuzzUsage:
			u.RawQuery = "tag=" + url.QueryEscape(query)
		case query != "":
			u.RawQuery = "status=" + url.QueryEscape(query)
		}
		header := http.Header{}
		switch (variant >> 3) & 3 {
		case 0:
			header.Set("Authorization", "Token "+s.AdminKey())
		case 1:
			header.Set("Authorization", "token "+s.AdminKey())
		case 2:
			header.Set("Authorization", "Bearer "+s.AdminKey())
		}
		before := s.Keys()

		req := (&http.Request{Method: method, URL: u, Header: header, Body: io.NopCloser(bytes.NewReader(body))}).WithContext(t.Context())
		res, err := s.Transport().RoundTrip(req)
		require.NoError(t, err, "%s %s: no answer", method, u)
		raw, err := io.ReadAll(res.Body)
		require.NoError(t, err)

		// The call the fake says it served.
		reqs := s.Requests()
		require.Len(t, reqs, 1)
		rec := reqs[0]
		require.Equal(t, res.StatusCode, rec.Status)

		allowed := []int{200, 400, 401, 403, 404, 405}
		if len(body) > 1<<20 {
			allowed = append(allowed, 413)
		}
		require.Contains(t, allowed, res.StatusCode, "%s %s: body %q", method, u, raw)
		require.Equal(t, "application/json", res.Header.Get("Content-Type"))
		requestID := res.Header.Get("dg-request-id")
		require.NotEmpty(t, requestID)
		require.Equal(t, rec.RequestID, requestID)
		var obj map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(raw, &obj), "%s %s: answer %q is not a JSON object", method, u, raw)
		if !testenv.NoSecret(t, "answer", string(raw), s.AdminKey()) {
			t.FailNow()
		}

		after := s.Keys()
		if res.StatusCode != http.StatusOK {
			fuzzCheckError(t, p, requestID, obj)
			require.Equal(t, before, after, "a refused call changed the keys")
			return
		}
		switch rec.Op {
		case keystest.OpCreate:
			fuzzCheckCreated(t, s, before, after, raw)
		case keystest.OpGrant:
			var g struct {
				AccessToken *string `json:"access_token"`
				ExpiresIn   *int64  `json:"expires_in"`
			}
			require.NoError(t, json.Unmarshal(raw, &g))
			require.NotNil(t, g.AccessToken)
			require.NotNil(t, g.ExpiresIn)
			assert.Equal(t, 2, strings.Count(*g.AccessToken, "."), "a JWT")
			assert.True(t, *g.ExpiresIn >= 1 && *g.ExpiresIn <= 3600, "expires_in %d", *g.ExpiresIn)
			assert.Equal(t, before, after)
		case keystest.OpList:
			require.Contains(t, obj, "api_keys")
			var l struct {
				APIKeys []map[string]map[string]any `json:"api_keys"`
			}
			require.NoError(t, json.Unmarshal(raw, &l))
			for _, item := range l.APIKeys {
				require.Contains(t, item, "member")
				require.Contains(t, item, "api_key")
				assert.NotContains(t, item["api_key"], "key", "a secret is listed")
			}
			assert.Equal(t, before, after)
		case keystest.OpProjects:
			require.Contains(t, obj, "projects")
			assert.Equal(t, before, after)
		case keystest.OpUsage:
			var us struct {
				Start, End string
				Resolution *struct {
					Units  string
					Amount int
				}
				Results *[]json.RawMessage
			}
			require.NoError(t, json.Unmarshal(raw, &us))
			require.NotNil(t, us.Resolution)
			require.NotNil(t, us.Results, "results is a list, even empty")
			assert.Empty(t, *us.Results, "no stream was recorded")
			_, err := time.Parse("2006-01-02", us.Start)
			require.NoError(t, err)
			_, err = time.Parse("2006-01-02", us.End)
			require.NoError(t, err)
			assert.LessOrEqual(t, us.Start, us.End)
			assert.Equal(t, before, after)
		default:
			// Get or delete of a key ID the fuzzer cannot know: never 200.
			t.Fatalf("%s %s: unexpected 200 for %v: %q", method, u, rec.Op, raw)
		}
	})
}

// fuzzCheckError checks an error body: the current shape on
// /v1/auth/grant, the legacy shape elsewhere, with the answer's request ID.
func fuzzCheckError(t *testing.T, path, requestID string, obj map[string]json.RawMessage) {
	t.Helper()
	want := []string{"err_code", "err_msg", "request_id"}
	code, msg := "err_code", "err_msg"
	if path == "/v1/auth/grant" {
		want = []string{"category", "details", "message", "request_id"}
		code, msg = "category", "message"
	}
	require.Equal(t, want, fieldNames(obj), "error shape for %s", path)
	var id, c, m string
	require.NoError(t, json.Unmarshal(obj["request_id"], &id))
	require.NoError(t, json.Unmarshal(obj[code], &c))
	require.NoError(t, json.Unmarshal(obj[msg], &m))
	require.Equal(t, requestID, id)
	require.NotEmpty(t, c)
	require.NotEmpty(t, m)
}

// fuzzCheckCreated checks a 200 create: exactly one new key, the one
// answered, and it lists.
func fuzzCheckCreated(t *testing.T, s *keystest.Server, before, after []keystest.KeyState, raw []byte) {
	t.Helper()
	var k struct {
		ID      string   `json:"api_key_id"`
		Key     string   `json:"key"`
		Comment string   `json:"comment"`
		Scopes  []string `json:"scopes"`
		Tags    []string `json:"tags"`
		Created string   `json:"created"`
	}
	require.NoError(t, json.Unmarshal(raw, &k))
	require.Regexp(t, hex40, k.Key)
	require.NotEmpty(t, k.Scopes)
	require.NotEmpty(t, k.Created)
	require.Len(t, after, len(before)+1, "a 200 create adds exactly one key")
	got := after[len(after)-1]
	require.Equal(t, k.ID, got.Key.ID)
	assert.Equal(t, k.Comment, got.Key.Comment)
	assert.Equal(t, k.Scopes, got.Key.Scopes)
	assert.Equal(t, k.Tags, got.Key.Tags)

	// It lists (Client.List asks for active and expired keys).
	l, err := s.Client().List(context.Background())
	require.NoError(t, err)
	var listed bool
	for _, x := range l {
		if x.ID == k.ID {
			listed = true
			assert.Equal(t, k.Comment, x.Comment)
			assert.Equal(t, k.Scopes, x.Scopes)
		}
	}
	require.True(t, listed, "created key %s does not list", k.ID)
}

// A client that gives up while a create waits on injected latency leaves no
// key behind, also over a socket (the fake reads the body before waiting,
// so that net/http notices the client leaving).
func TestCreateOverSocketHasNoEffectOnceClientLeaves(t *testing.T) {
	s := keystest.NewServer(t)
	s.SetLatency(keystest.OpCreate, time.Hour)
	c := socketClient(t, s, s.ProjectID())
	ended := keystest.CallEnded(s)
	// A socket cannot live in a synctest bubble: the client gives up once
	// the server has the call and waits on the latency.
	_, err := c.Create(cancelOnWait(t, s), keys.Spec{Scopes: []string{"usage:write"}, TTL: time.Minute})
	require.ErrorIs(t, err, context.Canceled)

	rec := nextCall(t, ended) // the handler ends with the client, not after the hour nor at Close
	assert.Equal(t, keystest.OpCreate, rec.Op)
	assert.Equal(t, 0, rec.Status, "no answer")
	assert.Len(t, s.Requests(), 1)
	assert.Len(t, s.Keys(), 1, "only the admin key: the create had no effect")
}

// A path that only cleans to /v1/listen is an unknown route answered in
// JSON, not a redirect.
func TestUncleanListenPathAnswersJSON(t *testing.T) {
	s := memServer(t)
	for _, p := range []string{"/v1//listen", "/v1/projects/../listen", "/v1/./listen"} {
		status, _, body := wire(t, s, "GET", p, "Token "+s.AdminKey(), "")
		assert.Equal(t, http.StatusNotFound, status, p)
		assert.Equal(t, "NOT_FOUND", body["err_code"], p)
	}
}
