package keys_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jarcoal/httpmock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/internal/testenv"
	"github.com/dglease/dglease/keys"
)

var validSpec = keys.Spec{Comment: "c", Scopes: []string{"usage:write"}, TTL: time.Minute}

// errorShapes are the three bodies Deepgram answers errors with, and what
// each must become.
var errorShapes = []struct {
	name                string
	body                string
	wantCode, wantMsg   string
	wantMsgAlso         string
	wantRequestID       string
	wantCodeFromSDKType bool
}{
	{
		name:          "legacy",
		body:          `{"err_code":"SOME_CODE","err_msg":"Something went wrong.","request_id":"req-legacy-1"}`,
		wantCode:      "SOME_CODE",
		wantMsg:       "Something went wrong.",
		wantRequestID: "req-legacy-1",
	},
	{
		name:          "current",
		body:          `{"category":"SOME_CATEGORY","message":"Something went wrong.","details":"More about it.","request_id":"req-current-1"}`,
		wantCode:      "SOME_CATEGORY",
		wantMsg:       "Something went wrong.",
		wantMsgAlso:   "More about it.",
		wantRequestID: "req-current-1",
	},
	{
		name:    "plain text",
		body:    "upstream connect error or disconnect/reset before headers\n",
		wantMsg: "upstream connect error or disconnect/reset before headers",
	},
}

var errorStatuses = []struct {
	status   int
	sentinel error
}{
	{400, nil},
	{401, keys.ErrUnauthorized},
	{403, keys.ErrForbidden},
	{404, keys.ErrNotFound},
	{429, keys.ErrRateLimited},
	{500, nil},
	{502, nil},
	{503, nil},
}

var allSentinels = []error{keys.ErrNotFound, keys.ErrUnauthorized, keys.ErrForbidden, keys.ErrRateLimited}

func TestEveryNon2xxIsAnAPIError(t *testing.T) {
	for _, st := range errorStatuses {
		for _, shape := range errorShapes {
			t.Run(fmt.Sprintf("%d %s", st.status, shape.name), func(t *testing.T) {
				c, mock := newClient(t, testProject)
				mock.RegisterResponder(http.MethodPost, keysURL, jsonResponder(st.status, shape.body))

				k, err := c.Create(context.Background(), validSpec)
				require.Error(t, err)
				assert.Nil(t, k)

				var apiErr *keys.APIError
				require.ErrorAs(t, err, &apiErr)
				assert.Equal(t, st.status, apiErr.StatusCode)
				assert.Equal(t, "create key", apiErr.Op)
				assert.Equal(t, shape.wantCode, apiErr.Code)
				assert.Contains(t, apiErr.Message, shape.wantMsg)
				if shape.wantMsgAlso != "" {
					assert.Contains(t, apiErr.Message, shape.wantMsgAlso)
				}
				assert.Equal(t, shape.wantRequestID, apiErr.RequestID)

				msg := err.Error()
				assert.True(t, strings.HasPrefix(msg, "keys: create key: "), "message %q", msg)
				assert.Contains(t, msg, fmt.Sprint(st.status))
				assert.Contains(t, msg, shape.wantMsg)
				if shape.wantRequestID != "" {
					assert.Contains(t, msg, shape.wantRequestID)
				}

				for _, s := range allSentinels {
					assert.Equal(t, s == st.sentinel, errors.Is(err, s), "errors.Is(err, %v)", s)
				}
				wantTemporary := st.status == 429 || st.status >= 500
				assert.Equal(t, wantTemporary, apiErr.Temporary(), "Temporary")
				assert.Equal(t, 1, mock.GetTotalCallCount(), "never retried")
			})
		}
	}
}

// everyCall is one of each call, with the op its errors name and the
// request it makes.
var everyCall = []struct {
	op     string
	method string
	url    string
	do     func(*keys.Client) error
}{
	{"create key", http.MethodPost, keysURL, func(c *keys.Client) error { _, err := c.Create(context.Background(), validSpec); return err }},
	{"delete key", http.MethodDelete, keysURL + "/key-1", func(c *keys.Client) error { return c.Delete(context.Background(), "key-1") }},
	{"list active keys", http.MethodGet, keysURL, func(c *keys.Client) error { _, err := c.List(context.Background()); return err }},
	{"grant token", http.MethodPost, grantURL, func(c *keys.Client) error { _, err := c.Grant(context.Background(), time.Minute); return err }},
	{"get usage", http.MethodGet, usageURL, func(c *keys.Client) error {
		_, err := c.Usage(context.Background(), keys.UsageQuery{Tag: "dglease:user=bob"})
		return err
	}},
}

// The SDK parses a 400 body itself (legacy shape only) and builds its own
// error; every shape of 400 must still come back as the same *APIError as
// any other status, whichever call made it.
func TestBadRequestIsConsistentAcrossCalls(t *testing.T) {
	for _, call := range everyCall {
		for _, shape := range errorShapes {
			t.Run(call.op+" "+shape.name, func(t *testing.T) {
				c, mock := newClient(t, testProject)
				mock.RegisterResponder(call.method, call.url, jsonResponder(400, shape.body))
				err := call.do(c)
				var apiErr *keys.APIError
				require.ErrorAs(t, err, &apiErr)
				assert.Equal(t, 400, apiErr.StatusCode)
				assert.Equal(t, call.op, apiErr.Op)
				assert.Equal(t, shape.wantCode, apiErr.Code)
				assert.Contains(t, apiErr.Message, shape.wantMsg)
				assert.Equal(t, shape.wantRequestID, apiErr.RequestID)
				for _, s := range allSentinels {
					assert.NotErrorIs(t, err, s)
				}
			})
		}
	}
}

func TestErrorsFromEveryCall(t *testing.T) {
	for _, call := range everyCall {
		for _, st := range errorStatuses {
			t.Run(fmt.Sprintf("%s %d", call.op, st.status), func(t *testing.T) {
				c, mock := newClient(t, testProject)
				mock.RegisterResponder(call.method, call.url, jsonResponder(st.status, `{"err_code":"X","err_msg":"nope"}`))
				err := call.do(c)
				var apiErr *keys.APIError
				require.ErrorAs(t, err, &apiErr)
				assert.Equal(t, st.status, apiErr.StatusCode)
				assert.Equal(t, call.op, apiErr.Op)
				if st.sentinel != nil {
					assert.ErrorIs(t, err, st.sentinel)
				}
			})
		}
	}
}

func TestRetryAfterHeader(t *testing.T) {
	// The HTTP-date is built inside the bubble, where the clock is exact.
	in90s := func() string { return time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat) }
	tests := []struct {
		name       string
		status     int
		retryAfter func() string
		want       time.Duration
	}{
		{"429 seconds", 429, func() string { return "7" }, 7 * time.Second},
		{"503 seconds", 503, func() string { return "120" }, 2 * time.Minute},
		{"429 HTTP-date", 429, in90s, 90 * time.Second},
		{"429 absent", 429, func() string { return "" }, 0},
		{"429 garbage", 429, func() string { return "soon" }, 0},
		{"429 past date", 429, func() string { return "Sun, 06 Nov 1994 08:49:37 GMT" }, 0}, // before the bubble's year 2000
		{"429 huge", 429, func() string { return "9999999" }, 24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c, mock := newClient(t, testProject)
				retryAfter := tt.retryAfter()
				mock.RegisterResponder(http.MethodPost, keysURL, func(*http.Request) (*http.Response, error) {
					res := httpmock.NewStringResponse(tt.status, `{"err_code":"TOO_MANY","err_msg":"slow down"}`)
					if retryAfter != "" {
						res.Header.Set("Retry-After", retryAfter)
					}
					return res, nil
				})
				_, err := c.Create(context.Background(), validSpec)
				var apiErr *keys.APIError
				require.ErrorAs(t, err, &apiErr)
				assert.Equal(t, tt.want, apiErr.RetryAfter)
				if tt.want > 0 {
					assert.Contains(t, err.Error(), "retry after")
				}
			})
		})
	}
}

func TestAPIErrorString(t *testing.T) {
	tests := []struct {
		err  keys.APIError
		want string
	}{
		{keys.APIError{StatusCode: 404}, "keys: deepgram answered 404 Not Found"},
		{keys.APIError{Op: "delete key", StatusCode: 404, Code: "NOT_FOUND", Message: "gone", RequestID: "r-1"},
			"keys: delete key: deepgram answered 404 Not Found: NOT_FOUND: gone (request_id r-1)"},
		{keys.APIError{Op: "create key", StatusCode: 429, RetryAfter: 5 * time.Second},
			"keys: create key: deepgram answered 429 Too Many Requests (retry after 5s)"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.err.Error())
		})
	}
}

func TestSuccessWithoutUsableBodyIsAnError(t *testing.T) {
	type call struct {
		name   string
		method string
		url    string
		do     func(*keys.Client) error
	}
	create := call{"create", http.MethodPost, keysURL, func(c *keys.Client) error {
		k, err := c.Create(context.Background(), validSpec)
		if err == nil && k == nil {
			return errors.New("nil key and nil error")
		}
		return err
	}}
	grant := call{"grant", http.MethodPost, grantURL, func(c *keys.Client) error {
		tok, err := c.Grant(context.Background(), time.Minute)
		if err == nil && tok == nil {
			return errors.New("nil token and nil error")
		}
		return err
	}}
	list := call{"list", http.MethodGet, keysURL, func(c *keys.Client) error { _, err := c.List(context.Background()); return err }}
	del := call{"delete", http.MethodDelete, keysURL + "/key-1", func(c *keys.Client) error { return c.Delete(context.Background(), "key-1") }}

	tests := []struct {
		call   call
		status int
		body   string
	}{
		{create, 200, ``},
		{create, 201, ``},
		{create, 204, ``},
		{create, 200, `not json`},
		{create, 200, `{"api_key_id":"key-1"`},
		{create, 200, `[]`},
		{create, 200, `null`},
		{create, 200, `{}`},
		{create, 200, `{"api_key_id":"key-1","scopes":["usage:write"],"created":"2025-01-02T03:04:05Z"}`},
		{create, 200, `{"key":"` + newSecret + `","scopes":["usage:write"]}`},
		{create, 200, `{"api_key_id":"key-1","key":"` + newSecret + `","created":"yesterday"}`},
		{create, 200, `{"api_key_id":"key-1","key":"` + newSecret + `","created":"2025-01-02T03:04:05Z","expiration_date":"tomorrow"}`},
		{create, 200, `{"api_key_id":1,"key":true}`},
		{grant, 200, ``},
		{grant, 200, `{}`},
		{grant, 200, `{"access_token":"` + testJWT + `"}`},
		{grant, 200, `{"access_token":"` + testJWT + `","expires_in":0}`},
		{grant, 200, `{"access_token":"` + testJWT + `","expires_in":-5}`},
		{grant, 200, `{"access_token":"","expires_in":30}`},
		{grant, 200, `{"expires_in":30}`},
		{grant, 200, `<html>`},
		{list, 200, ``},
		{list, 200, `oops`},
		{list, 200, `{"api_keys":"x"}`},
		{del, 200, ``},
		{del, 204, ``},
		{del, 200, `<html>`},
	}
	for _, tt := range tests {
		// Named without the secrets, which a failing test's name would print.
		body := strings.NewReplacer(newSecret, "<secret>", testJWT, "<jwt>").Replace(tt.body)
		t.Run(fmt.Sprintf("%s %d %q", tt.call.name, tt.status, body), func(t *testing.T) {
			c, mock := newClient(t, testProject)
			mock.RegisterResponder(tt.call.method, tt.call.url, jsonResponder(tt.status, tt.body))
			err := tt.call.do(c)
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), "keys: "), "message %q", err)
			assertNoSecret(t, "error", err.Error())
			var apiErr *keys.APIError
			assert.False(t, errors.As(err, &apiErr), "a 2xx is not an APIError")
		})
	}
}

func TestRedirectIsNotFollowed(t *testing.T) {
	for _, status := range []int{301, 302, 303, 307, 308} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			c, mock := newClient(t, testProject)
			mock.RegisterResponder(http.MethodPost, keysURL, func(*http.Request) (*http.Response, error) {
				res := httpmock.NewStringResponse(status, "moved")
				res.Header.Set("Location", "http://evil.invalid/steal")
				return res, nil
			})
			mock.RegisterResponder(http.MethodPost, "http://evil.invalid/steal", func(req *http.Request) (*http.Response, error) {
				t.Errorf("redirect followed to %s", req.URL)
				return httpmock.NewStringResponse(200, createAnswer("evil")), nil
			})
			mock.RegisterResponder(http.MethodGet, "http://evil.invalid/steal", func(req *http.Request) (*http.Response, error) {
				t.Errorf("redirect followed to %s", req.URL)
				return httpmock.NewStringResponse(200, createAnswer("evil")), nil
			})

			k, err := c.Create(context.Background(), validSpec)
			require.Error(t, err)
			assert.Nil(t, k)
			var apiErr *keys.APIError
			require.ErrorAs(t, err, &apiErr)
			assert.Equal(t, status, apiErr.StatusCode)
			assert.Equal(t, 1, mock.GetTotalCallCount())
		})
	}
}

func TestWithHTTPClientIsNotModified(t *testing.T) {
	mock := newMock(t)
	hc := &http.Client{Transport: mock}
	_, err := keys.New(testAPIKey, testProject, keys.WithHTTPClient(hc))
	require.NoError(t, err)
	assert.Same(t, mock, hc.Transport)
	assert.Nil(t, hc.CheckRedirect)
}

var errDial = errors.New("dial tcp: connection refused")

func TestTransportErrorIsWrapped(t *testing.T) {
	c, mock := newClient(t, testProject)
	mock.RegisterResponder(http.MethodPost, keysURL, httpmock.NewErrorResponder(
		fmt.Errorf("proxy said no to Authorization: token %s: %w", testAPIKey, errDial)))

	_, err := c.Create(context.Background(), validSpec)
	require.Error(t, err)
	assert.ErrorIs(t, err, errDial)
	var apiErr *keys.APIError
	assert.False(t, errors.As(err, &apiErr))
	assert.True(t, strings.HasPrefix(err.Error(), "keys: create key: "), "message %q", err)
	assert.Contains(t, err.Error(), "connection refused")
	assertNoSecret(t, "error", err.Error())
}

type failingReader struct{ err error }

func (r failingReader) Read([]byte) (int, error) { return 0, r.err }

var errReset = errors.New("connection reset by peer")

// brokenBody answers status with a body that breaks off after prefix.
func brokenBody(status int, header http.Header, prefix string) httpmock.Responder {
	return func(*http.Request) (*http.Response, error) {
		return &http.Response{
			StatusCode: status,
			Header:     header,
			Body:       io.NopCloser(io.MultiReader(strings.NewReader(prefix), failingReader{errReset})),
		}, nil
	}
}

func TestBodyReadErrorOnSuccessIsAnError(t *testing.T) {
	c, mock := newClient(t, testProject)
	mock.RegisterResponder(http.MethodPost, keysURL, brokenBody(200, http.Header{}, `{"api_key_id":"k`))
	k, err := c.Create(context.Background(), validSpec)
	require.Error(t, err)
	assert.Nil(t, k)
	assert.ErrorIs(t, err, errReset)
	assert.True(t, strings.HasPrefix(err.Error(), "keys: create key: "), "message %q", err)
}

// An error status is the answer even when its body breaks off: the caller
// still gets an *APIError, so "already gone" and Retry-After keep working.
func TestBodyReadErrorOnErrorStatusIsStillAnAPIError(t *testing.T) {
	t.Run("404", func(t *testing.T) {
		c, mock := newClient(t, testProject)
		mock.RegisterResponder(http.MethodDelete, keysURL+"/k1", brokenBody(404, http.Header{}, `{"err_code":"NOT_FOU`))
		err := c.Delete(context.Background(), "k1")
		require.ErrorIs(t, err, keys.ErrNotFound)
		var apiErr *keys.APIError
		require.ErrorAs(t, err, &apiErr)
		assert.Equal(t, 404, apiErr.StatusCode)
	})
	t.Run("429", func(t *testing.T) {
		c, mock := newClient(t, testProject)
		mock.RegisterResponder(http.MethodPost, keysURL, brokenBody(429, http.Header{"Retry-After": {"7"}}, `{"err_`))
		_, err := c.Create(context.Background(), validSpec)
		require.ErrorIs(t, err, keys.ErrRateLimited)
		var apiErr *keys.APIError
		require.ErrorAs(t, err, &apiErr)
		assert.Equal(t, 7*time.Second, apiErr.RetryAfter)
	})
}

// A program may replace http.DefaultTransport with any RoundTripper (a
// tracing wrapper, httpmock.Activate): the default client must still work,
// and send through it.
func TestDefaultClientUsesWhateverDefaultTransportIs(t *testing.T) {
	mock := newMock(t)
	mock.RegisterResponder(http.MethodDelete, keysURL+"/k1", jsonResponder(200, `{"message":"ok"}`))
	old := http.DefaultTransport
	http.DefaultTransport = mock
	t.Cleanup(func() { http.DefaultTransport = old })

	c, err := keys.New(testAPIKey, testProject, keys.WithHost(testHost))
	require.NoError(t, err)
	require.NoError(t, c.Delete(context.Background(), "k1"))
	assert.Equal(t, 1, mock.GetTotalCallCount())
}

func TestContextCancelled(t *testing.T) {
	t.Run("before the call", func(t *testing.T) {
		c, mock := newClient(t, testProject)
		mock.RegisterResponder(http.MethodPost, keysURL, jsonResponder(200, createAnswer("key-1")))
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		k, err := c.Create(ctx, validSpec)
		require.Error(t, err)
		assert.Nil(t, k)
		assert.ErrorIs(t, err, context.Canceled)
		assert.True(t, strings.HasPrefix(err.Error(), "keys: "), "message %q", err)
		assertNoSecret(t, "error", err.Error())
		assert.Zero(t, mock.GetTotalCallCount(), "a dead context sends nothing")
	})
	t.Run("before discovery", func(t *testing.T) {
		c, mock := newClient(t, "")
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := c.List(ctx)
		assert.ErrorIs(t, err, context.Canceled)
		assert.Zero(t, mock.GetTotalCallCount())
	})
	t.Run("during the call", func(t *testing.T) {
		c, mock := newClient(t, testProject)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		mock.RegisterResponder(http.MethodPost, keysURL, func(req *http.Request) (*http.Response, error) {
			cancel()
			<-req.Context().Done()
			return nil, req.Context().Err()
		})
		k, err := c.Create(ctx, validSpec)
		require.Error(t, err)
		assert.Nil(t, k)
		assert.ErrorIs(t, err, context.Canceled)
	})
	t.Run("deadline during discovery", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c, mock := newClient(t, "")
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			var called atomic.Bool
			mock.RegisterResponder(http.MethodGet, projectsURL, func(req *http.Request) (*http.Response, error) {
				called.Store(true)
				<-req.Context().Done() // discovery hangs until the deadline
				return nil, req.Context().Err()
			})
			start := time.Now()
			_, err := c.List(ctx)
			assert.ErrorIs(t, err, context.DeadlineExceeded)
			assert.True(t, called.Load(), "discovery was under way when the deadline passed")
			assert.Equal(t, time.Second, time.Since(start))
		})
	})
	t.Run("nil context", func(t *testing.T) {
		c, mock := newClient(t, testProject)
		//lint:ignore SA1012 the nil context is the point of this test
		_, err := c.Grant(nil, time.Minute) //nolint:staticcheck
		require.Error(t, err)
		assert.Contains(t, err.Error(), "keys: ")
		assert.Contains(t, err.Error(), "nil context")
		assert.Zero(t, mock.GetTotalCallCount())
	})
}

func TestErrorsNeverContainTheAPIKey(t *testing.T) {
	tests := []struct {
		name string
		body string
	}{
		{"plain text echo", "invalid credentials: token " + testAPIKey},
		{"legacy err_msg echo", `{"err_code":"INVALID_AUTH","err_msg":"bad key ` + testAPIKey + `"}`},
		{"legacy err_code echo", `{"err_code":"` + testAPIKey + `","err_msg":"bad key"}`},
		{"request_id echo", `{"err_code":"INVALID_AUTH","err_msg":"bad key","request_id":"` + testAPIKey + `"}`},
		{"current message echo", `{"category":"INVALID_AUTH","message":"bad key ` + testAPIKey + `"}`},
		{"current details echo", `{"category":"INVALID_AUTH","message":"bad","details":"key=` + testAPIKey + `"}`},
		{"current object details echo", `{"category":"INVALID_AUTH","message":"bad","details":{"key":"` + testAPIKey + `"}}`},
		{"current category echo", `{"category":"` + testAPIKey + `","message":"bad"}`},
		{"echo straddling the length bound", strings.Repeat("x", 500) + testAPIKey},
		{"echo straddling the JSON length bound", `{"err_code":"X","err_msg":"` + strings.Repeat("x", 500) + testAPIKey + `"}`},
		{"escaped echo straddling the JSON length bound", `{"err_code":"X","err_msg":"` + strings.Repeat("x", 500) + jsonEscaped(testAPIKey) + `"}`},
		{"echo split by an escaped NUL", `{"err_code":"X","err_msg":"token ` + testAPIKey[:20] + `\u0000` + testAPIKey[20:] + `"}`},
		{"echo split by an escaped DEL", `{"err_code":"X","err_msg":"token ` + testAPIKey[:20] + `\u007f` + testAPIKey[20:] + `"}`},
		{"plain text echo split by a NUL", "token " + testAPIKey[:20] + "\x00" + testAPIKey[20:]},
		{"plain text echo split by a line break", "token " + testAPIKey[:20] + "\n" + testAPIKey[20:]},
		{"plain text echo split by a byte that is not UTF-8", "token " + testAPIKey[:20] + "\xff" + testAPIKey[20:]},
		{"echo split by an escaped tab", `{"err_code":"X","err_msg":"token ` + testAPIKey[:20] + `\t` + testAPIKey[20:] + `"}`},
		{"escaped echo in object details", `{"category":"X","message":"bad","details":{"k":"` + jsonEscaped(testAPIKey) + `"}}`},
		{"escaped echo straddling the details bound", `{"category":"X","message":"bad","details":"` + strings.Repeat("x", 500) + jsonEscaped(testAPIKey) + `"}`},
	}
	for _, st := range []int{400, 401, 403, 500} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%d %s", st, tt.name), func(t *testing.T) {
				c, mock := newClient(t, testProject)
				mock.RegisterResponder(http.MethodPost, keysURL, jsonResponder(st, tt.body))
				_, err := c.Create(context.Background(), validSpec)
				var apiErr *keys.APIError
				require.ErrorAs(t, err, &apiErr)
				for what, s := range map[string]string{"Error()": err.Error(), "%+v": fmt.Sprintf("%+v", err), "%#v": fmt.Sprintf("%#v", apiErr),
					"Code": apiErr.Code, "Message": apiErr.Message, "RequestID": apiErr.RequestID} {
					testenv.NoSecret(t, what, s, testAPIKey[:12]) // a prefix: no cut-off key either
					testenv.NoSecret(t, what+" (as JSON escapes)", s, jsonEscaped(testAPIKey))
				}
			})
		}
	}
}

// jsonEscaped writes s as JSON \u escapes, which a raw-byte scrub of the
// body cannot see.
func jsonEscaped(s string) string {
	var b strings.Builder
	for _, r := range s {
		fmt.Fprintf(&b, "\\u%04x", r)
	}
	return b.String()
}
