package keys_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jarcoal/httpmock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/klog/v2"

	"github.com/dglease/dglease/internal/testenv"
	"github.com/dglease/dglease/keys"
)

// registerAllCalls answers every call of a client for host and
// testProject on mock, and returns the recorder of what they are sent.
func registerAllCalls(mock *httpmock.MockTransport, host string) *recorder {
	rec := &recorder{}
	base := host + "/v1/projects/" + testProject + "/keys"
	mock.RegisterResponder(http.MethodPost, base, rec.wrap(jsonResponder(200, createAnswer("key-1"))))
	mock.RegisterResponder(http.MethodGet, base, rec.wrap(jsonResponder(200, activeAnswer)))
	mock.RegisterResponder(http.MethodDelete, base+"/key-1", rec.wrap(jsonResponder(200, `{"message":"ok"}`)))
	mock.RegisterResponder(http.MethodPost, host+"/v1/auth/grant", rec.wrap(jsonResponder(200, `{"access_token":"`+testJWT+`","expires_in":30}`)))
	return rec
}

// runAllCalls makes every call of c (answered by registerAllCalls), which
// must succeed and hand out the secrets.
func runAllCalls(t *testing.T, c *keys.Client) {
	t.Helper()
	ctx := context.Background()
	k, err := c.Create(ctx, validSpec)
	require.NoError(t, err)
	require.Equal(t, newSecret, k.Secret)
	_, err = c.List(ctx)
	require.NoError(t, err)
	require.NoError(t, c.Delete(ctx, "key-1"))
	tok, err := c.Grant(ctx, 30*time.Second)
	require.NoError(t, err)
	require.Equal(t, testJWT, tok.Secret)
}

func TestEnvironmentIsIgnored(t *testing.T) {
	const good = "https://good.test"
	tests := []struct {
		name, value string
	}{
		{"DEEPGRAM_HOST", "http://evil.invalid"},
		{"DEEPGRAM_ACCESS_TOKEN", "evil-jwt"},
		{"DEEPGRAM_API_VERSION", "v9"},
		{"DEEPGRAM_API_PATH", "evil"},
		{"DEEPGRAM_WEBSOCKET_SKIP_AUTH", "true"},
		{"DEEPGRAM_DEBUG_REST", "true"},
		{"DEEPGRAM_API_KEY", "env-key"},
		{"DEEPGRAM_SELF_HOSTED", "true"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(tt.name, tt.value)

			mock := newMock(t) // fails the test on a request to any other host
			rec := registerAllCalls(mock, good)
			out := testenv.CaptureStdio(t, func() {
				c, err := keys.New(testAPIKey, testProject, keys.WithHost(good), keys.WithHTTPClient(&http.Client{Transport: mock}))
				require.NoError(t, err)
				runAllCalls(t, c)
			})
			reqs := rec.all()
			require.Len(t, reqs, 5, "create, list twice, delete, grant")
			for _, req := range reqs {
				assert.Equal(t, "good.test", req.URL.Host)
				assert.Equal(t, "https", req.URL.Scheme)
				assert.True(t, strings.HasPrefix(req.URL.Path, "/v1/"), "path %q", req.URL.Path)
				assert.NotContains(t, req.URL.Path, "evil")
				assert.NotContains(t, req.URL.Path, "v9")
				assertCommonHeaders(t, req)
				for name, values := range req.Header {
					testenv.NoSecret(t, "header "+name, strings.Join(values, ", "), "evil-jwt", "env-key")
				}
			}
			assertNoSecret(t, "stdout and stderr", out)
			assert.NotContains(t, out, "DEEPGRAM_DEBUG_REST found")
			assert.Equal(t, 5, mock.GetTotalCallCount(), "no other host was called")
		})
	}
}

func TestDeepgramHostDoesNotOverrideTheDefaultHost(t *testing.T) {
	t.Setenv("DEEPGRAM_HOST", "http://evil.invalid")
	mock := newMock(t)
	var rec recorder
	mock.RegisterResponder(http.MethodPost, keys.DefaultHost+"/v1/auth/grant", rec.wrap(jsonResponder(200, `{"access_token":"`+testJWT+`","expires_in":30}`)))
	c, err := keys.New(testAPIKey, testProject, keys.WithHTTPClient(&http.Client{Transport: mock}))
	require.NoError(t, err)
	_, err = c.Grant(context.Background(), 30*time.Second)
	require.NoError(t, err)
	req := rec.only(t)
	assert.Equal(t, "api.deepgram.com", req.URL.Host)
	assert.Equal(t, "https", req.URL.Scheme)
}

func TestDeepgramAPIKeyIsNotRead(t *testing.T) {
	t.Setenv("DEEPGRAM_API_KEY", "env-key")
	c, err := keys.New("", testProject)
	assert.Nil(t, c)
	assertKeysError(t, err, "API key must not be empty")
	testenv.NoSecret(t, "error", err.Error(), "env-key")
}

func TestSkipAuthDoesNotDisableTLSVerification(t *testing.T) {
	t.Setenv("DEEPGRAM_WEBSOCKET_SKIP_AUTH", "true")

	var served atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		_, _ = io.WriteString(w, createAnswer("key-1"))
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the failed handshakes
	srv.StartTLS()
	defer srv.Close()

	c, err := keys.New(testAPIKey, testProject, keys.WithHost(srv.URL)) // default HTTP client
	require.NoError(t, err)
	k, err := c.Create(context.Background(), validSpec)
	require.Error(t, err)
	assert.Nil(t, k)

	var verr *tls.CertificateVerificationError
	var unknown x509.UnknownAuthorityError
	assert.True(t, errors.As(err, &verr) || errors.As(err, &unknown), "TLS verification error, got %v", err)
	assert.Contains(t, err.Error(), "x509")
	var apiErr *keys.APIError
	assert.False(t, errors.As(err, &apiErr))
	assert.Zero(t, served.Load(), "no request reached the unverified server")

	// The same server is reachable once its certificate is trusted: the
	// failure above was verification, not something else.
	c, err = keys.New(testAPIKey, testProject, keys.WithHost(srv.URL), keys.WithHTTPClient(srv.Client()))
	require.NoError(t, err)
	_, err = c.Create(context.Background(), validSpec)
	require.NoError(t, err)
	assert.Equal(t, int32(1), served.Load())
}

func TestDebugRestPrintsNothing(t *testing.T) {
	t.Setenv("DEEPGRAM_DEBUG_REST", "true")
	mock := newMock(t)
	mock.RegisterResponder(http.MethodPost, keysURL, jsonResponder(200, createAnswer("key-1")))
	mock.RegisterResponder(http.MethodPost, grantURL, jsonResponder(200, `{"access_token":"`+testJWT+`","expires_in":30}`))

	const marker = "capture-works-marker"
	out := testenv.CaptureStdio(t, func() {
		fmt.Println(marker)
		fmt.Fprintln(os.Stderr, marker+"-stderr")
		c, err := keys.New(testAPIKey, testProject, keys.WithHost(testHost), keys.WithHTTPClient(&http.Client{Transport: mock}))
		require.NoError(t, err)
		k, err := c.Create(context.Background(), validSpec)
		require.NoError(t, err)
		require.Equal(t, newSecret, k.Secret)
		tok, err := c.Grant(context.Background(), 30*time.Second)
		require.NoError(t, err)
		require.Equal(t, testJWT, tok.Secret)
	})
	assert.Contains(t, out, marker, "the capture saw stdout")
	assert.Contains(t, out, marker+"-stderr", "the capture saw stderr")
	assertNoSecret(t, "stdout and stderr", out)
	assert.NotContains(t, out, "DEEPGRAM_DEBUG_REST found")
	assert.NotContains(t, out, "Authorization")
	assert.Equal(t, 2, mock.GetTotalCallCount())
	assertNoDebugFiles(t)
}

// assertNoDebugFiles checks that the SDK's REST debug log (files named
// N-client.log, N-NNNN.req.headers, ...) was not written to the working
// directory.
func assertNoDebugFiles(t *testing.T) {
	t.Helper()
	entries, err := os.ReadDir(".")
	require.NoError(t, err)
	for _, e := range entries {
		name := e.Name()
		assert.False(t, strings.HasSuffix(name, "client.log") || strings.Contains(name, ".req.") || strings.Contains(name, ".res."),
			"debug file %s", name)
	}
}

func TestSDKKlogAtHighVerbosityLogsNoSecret(t *testing.T) {
	c, mock := newClient(t, "")
	mock.RegisterResponder(http.MethodGet, projectsURL, jsonResponder(200, `{"projects":[{"project_id":"`+testProject+`","name":"Main"}]}`))
	registerAllCalls(mock, testHost)

	var fs flag.FlagSet
	klog.InitFlags(&fs)
	var buf testenv.Buffer
	require.NoError(t, fs.Set("v", "9"))
	require.NoError(t, fs.Set("logtostderr", "false"))
	require.NoError(t, fs.Set("alsologtostderr", "false"))
	klog.SetOutput(&buf)
	defer func() {
		klog.Flush()
		_ = fs.Set("v", "0")
		_ = fs.Set("logtostderr", "true")
		klog.SetOutput(io.Discard)
	}()

	runAllCalls(t, c)
	// Error answers go through the SDK's logging too.
	mock.RegisterResponder(http.MethodPost, keysURL, jsonResponder(400, "bad key "+testAPIKey))
	_, err := c.Create(context.Background(), validSpec)
	require.Error(t, err)
	klog.Flush()

	logged := buf.String()
	assert.Contains(t, logged, "v1/projects/"+testProject+"/keys", "klog captured the SDK's verbose logging")
	assertNoSecret(t, "klog output", logged)
}
