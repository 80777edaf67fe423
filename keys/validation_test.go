package keys_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	sdkinterfaces "github.com/deepgram/deepgram-go-sdk/v3/pkg/client/interfaces/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/internal/testenv"
	"github.com/dglease/dglease/keys"
)

// assertKeysError checks that err is a "keys: " error naming the problem.
func assertKeysError(t *testing.T, err error, wantContains ...string) {
	t.Helper()
	require.Error(t, err)
	msg := err.Error()
	assert.True(t, strings.HasPrefix(msg, "keys: "), "message %q starts with \"keys: \"", msg)
	for _, s := range wantContains {
		assert.Contains(t, msg, s)
	}
	assertNoSecret(t, "error", msg)
}

func TestNewValidation(t *testing.T) {
	tests := []struct {
		name    string
		apiKey  string
		project string
		opts    []keys.Option
		want    []string
	}{
		{name: "empty API key", apiKey: "", project: testProject, want: []string{"API key must not be empty"}},
		{name: "API key with space", apiKey: "abc def", project: testProject, want: []string{"API key", "spaces"}},
		{name: "API key with leading space", apiKey: " " + testAPIKey, project: testProject, want: []string{"API key", "spaces"}},
		{name: "API key with trailing newline", apiKey: testAPIKey + "\n", project: testProject, want: []string{"API key", "spaces or control characters"}},
		{name: "API key with tab", apiKey: "abc\tdef", project: testProject, want: []string{"API key"}},
		{name: "API key with NUL", apiKey: "abc\x00def", project: testProject, want: []string{"API key"}},
		{name: "API key with DEL", apiKey: "abc\x7fdef", project: testProject, want: []string{"API key"}},
		{name: "project ID with slash", apiKey: testAPIKey, project: "a/b", want: []string{"project ID", `"a/b"`, "URL path"}},
		{name: "project ID with dot-dot path", apiKey: testAPIKey, project: "../../v1/auth", want: []string{"project ID", "URL path"}},
		{name: "project ID with question mark", apiKey: testAPIKey, project: "a?status=x", want: []string{"project ID", "URL path"}},
		{name: "project ID with hash", apiKey: testAPIKey, project: "a#b", want: []string{"project ID", "URL path"}},
		{name: "project ID with percent", apiKey: testAPIKey, project: "a%2Fb", want: []string{"project ID", "URL path"}},
		{name: "project ID with space", apiKey: testAPIKey, project: "a b", want: []string{"project ID", "URL path"}},
		{name: "project ID with backslash", apiKey: testAPIKey, project: `a\b`, want: []string{"project ID", "URL path"}},
		{name: "project ID non-ASCII", apiKey: testAPIKey, project: "projé", want: []string{"project ID", "URL path"}},
		{name: "project ID with newline", apiKey: testAPIKey, project: "a\nb", want: []string{"project ID", "URL path"}},
		{name: "project ID too long", apiKey: testAPIKey, project: strings.Repeat("a", 257), want: []string{"project ID", "257 bytes"}},
		{name: "nil option", apiKey: testAPIKey, project: testProject,
			opts: []keys.Option{nil}, want: []string{"nil Option"}},
		{name: "nil http client", apiKey: testAPIKey, project: testProject,
			opts: []keys.Option{keys.WithHTTPClient(nil)}, want: []string{"WithHTTPClient", "nil"}},
		{name: "user agent with newline", apiKey: testAPIKey, project: testProject,
			opts: []keys.Option{keys.WithUserAgent("app\r\nX-Evil: 1")}, want: []string{"user agent", "line breaks"}},
		{name: "host without scheme", apiKey: testAPIKey, project: testProject,
			opts: []keys.Option{keys.WithHost("api.deepgram.com")}, want: []string{"host", "https://"}},
		{name: "host with ftp scheme", apiKey: testAPIKey, project: testProject,
			opts: []keys.Option{keys.WithHost("ftp://api.deepgram.com")}, want: []string{"host", "https://"}},
		{name: "host with ws scheme", apiKey: testAPIKey, project: testProject,
			opts: []keys.Option{keys.WithHost("wss://api.deepgram.com")}, want: []string{"host", "https://"}},
		{name: "host with path", apiKey: testAPIKey, project: testProject,
			opts: []keys.Option{keys.WithHost("https://api.deepgram.com/v1")}, want: []string{"host", "path"}},
		{name: "host with query", apiKey: testAPIKey, project: testProject,
			opts: []keys.Option{keys.WithHost("https://api.deepgram.com?x=1")}, want: []string{"host", "query"}},
		{name: "host with fragment", apiKey: testAPIKey, project: testProject,
			opts: []keys.Option{keys.WithHost("https://api.deepgram.com#x")}, want: []string{"host", "fragment"}},
		{name: "host with user info", apiKey: testAPIKey, project: testProject,
			opts: []keys.Option{keys.WithHost("https://user:hunter2@api.deepgram.com")}, want: []string{"host", "user info"}},
		{name: "host with a key as user and a bad scheme", apiKey: testAPIKey, project: testProject,
			opts: []keys.Option{keys.WithHost("wss://hunter2@api.deepgram.com")}, want: []string{"host", "user info"}},
		{name: "host with a key as user and a port", apiKey: testAPIKey, project: testProject,
			opts: []keys.Option{keys.WithHost("https://hunter2@127.0.0.1:8080")}, want: []string{"host", "user info"}},
		{name: "host unparsable with a key as user", apiKey: testAPIKey, project: testProject,
			opts: []keys.Option{keys.WithHost("http://hunter2@[::1")}, want: []string{"host", "user info"}},
		{name: "host without host name", apiKey: testAPIKey, project: testProject,
			opts: []keys.Option{keys.WithHost("https://")}, want: []string{"host", "no host name"}},
		{name: "host empty", apiKey: testAPIKey, project: testProject,
			opts: []keys.Option{keys.WithHost("")}, want: []string{"host"}},
		{name: "host unparsable", apiKey: testAPIKey, project: testProject,
			opts: []keys.Option{keys.WithHost("http://[::1")}, want: []string{"host", "not a URL"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mock := newMock(t)
			opts := append([]keys.Option{keys.WithHTTPClient(&http.Client{Transport: mock})}, tt.opts...)
			c, err := keys.New(tt.apiKey, tt.project, opts...)
			assert.Nil(t, c)
			assertKeysError(t, err, tt.want...)
			testenv.NoSecret(t, "error", err.Error(), "hunter2")
			assert.Zero(t, mock.GetTotalCallCount())
		})
	}
}

func TestNewAcceptsHosts(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"https://api.deepgram.com", "https://api.deepgram.com"},
		{"https://api.deepgram.com/", "https://api.deepgram.com"},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080"},
		{"http://[::1]:8080/", "http://[::1]:8080"},
		{"https://api.eu.deepgram.com:443", "https://api.eu.deepgram.com:443"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			c, err := keys.New(testAPIKey, testProject, keys.WithHost(tt.in))
			require.NoError(t, err)
			assert.Equal(t, tt.want, c.Host())
		})
	}
	t.Run("default", func(t *testing.T) {
		c, err := keys.New(testAPIKey, testProject)
		require.NoError(t, err)
		assert.Equal(t, keys.DefaultHost, c.Host())
		assert.Equal(t, "https://api.deepgram.com", keys.DefaultHost)
	})
}

func TestCreateValidation(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name string
		spec keys.Spec
		want []string
	}{
		{"zero spec", keys.Spec{}, []string{"scope"}},
		{"empty scopes", keys.Spec{Scopes: []string{}, TTL: time.Minute}, []string{"at least one scope"}},
		{"nil scopes", keys.Spec{TTL: time.Minute}, []string{"at least one scope"}},
		{"empty scope string", keys.Spec{Scopes: []string{""}, TTL: time.Minute}, []string{"scope", "non-empty"}},
		{"scope with spaces", keys.Spec{Scopes: []string{" usage:write"}, TTL: time.Minute}, []string{"scope", "spaces"}},
		{"empty tag", keys.Spec{Scopes: []string{"usage:write"}, Tags: []string{"ok", ""}, TTL: time.Minute}, []string{"tag", "empty"}},
		{"blank tag", keys.Spec{Scopes: []string{"usage:write"}, Tags: []string{" "}, TTL: time.Minute}, []string{"tag", "only spaces"}},
		{"tag over 128 bytes", keys.Spec{Scopes: []string{"usage:write"}, Tags: []string{strings.Repeat("t", 129)}, TTL: time.Minute}, []string{"tag", "129 bytes", "128 characters"}},
		{"tag of 43 three-byte runes", keys.Spec{Scopes: []string{"usage:write"}, Tags: []string{strings.Repeat("日", 43)}, TTL: time.Minute}, []string{"tag", "129 bytes"}},
		{"tag not UTF-8", keys.Spec{Scopes: []string{"usage:write"}, Tags: []string{"a\xffb"}, TTL: time.Minute}, []string{"tag", "UTF-8"}},
		{"negative TTL", keys.Spec{Scopes: []string{"usage:write"}, TTL: -time.Second}, []string{"TTL", "positive"}},
		{"both TTL and ExpiresAt", keys.Spec{Scopes: []string{"usage:write"}, TTL: time.Minute, ExpiresAt: now.Add(time.Hour)}, []string{"both TTL and ExpiresAt"}},
		{"negative TTL and ExpiresAt", keys.Spec{Scopes: []string{"usage:write"}, TTL: -time.Minute, ExpiresAt: now.Add(time.Hour)}, []string{"both TTL and ExpiresAt"}},
		{"neither TTL nor ExpiresAt", keys.Spec{Scopes: []string{"usage:write"}}, []string{"TTL or an ExpiresAt"}},
		{"ExpiresAt in the past", keys.Spec{Scopes: []string{"usage:write"}, ExpiresAt: now.Add(-time.Minute)}, []string{"ExpiresAt", "not in the future"}},
		{"ExpiresAt long ago", keys.Spec{Scopes: []string{"usage:write"}, ExpiresAt: time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)}, []string{"ExpiresAt", "2001-01-01T00:00:00Z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// No project: a validation error must come before discovery too.
			c, mock := newClient(t, "")
			k, err := c.Create(context.Background(), tt.spec)
			assert.Nil(t, k)
			assertKeysError(t, err, tt.want...)
			assert.Zero(t, mock.GetTotalCallCount())
		})
	}
}

func TestGrantValidation(t *testing.T) {
	tests := []struct {
		name string
		ttl  time.Duration
	}{
		{"zero", 0},
		{"negative", -time.Second},
		{"500ms", 500 * time.Millisecond},
		{"999ms", 999 * time.Millisecond},
		{"3601s", 3601 * time.Second},
		{"3600.5s", 3600*time.Second + 500*time.Millisecond},
		{"a day", 24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, mock := newClient(t, "")
			tok, err := c.Grant(context.Background(), tt.ttl)
			assert.Nil(t, tok)
			assertKeysError(t, err, "grant TTL", "1s..1h0m0s")
			assert.Zero(t, mock.GetTotalCallCount())
		})
	}
	assert.Equal(t, time.Second, keys.MinGrantTTL)
	assert.Equal(t, time.Hour, keys.MaxGrantTTL)
}

func TestDeleteValidation(t *testing.T) {
	tests := []struct {
		name string
		id   string
		want []string
	}{
		{"empty", "", []string{"key ID must not be empty"}},
		{"slash", "a/b", []string{"key ID", `"a/b"`, "URL path"}},
		{"dot-dot", "../../projects", []string{"key ID", "URL path"}},
		{"question mark", "k?x=1", []string{"key ID", "URL path"}},
		{"hash", "k#x", []string{"key ID", "URL path"}},
		{"percent", "k%2F", []string{"key ID", "URL path"}},
		{"space", "k 1", []string{"key ID", "URL path"}},
		{"tab", "k\t1", []string{"key ID", "URL path"}},
		{"backslash", `k\1`, []string{"key ID", "URL path"}},
		{"non-ASCII", "kéy", []string{"key ID", "URL path"}},
		{"emoji", "k🔑", []string{"key ID", "URL path"}},
		{"DEL", "k\x7f", []string{"key ID", "URL path"}},
		{"too long", strings.Repeat("k", 300), []string{"key ID", "300 bytes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, mock := newClient(t, "")
			err := c.Delete(context.Background(), tt.id)
			assertKeysError(t, err, tt.want...)
			assert.Zero(t, mock.GetTotalCallCount())
		})
	}
}

func TestIDsThatAreFine(t *testing.T) {
	// Deepgram IDs are UUIDs; the check must not be stricter than that.
	const id = "3f0c6f4e-8a8b-4d0b-9e3a-1b2c3d4e5f60"
	c, rec := recordOne(t, id, http.MethodDelete, testHost+"/v1/projects/"+id+"/keys/"+id, `{"message":"ok"}`)
	require.NoError(t, c.Delete(context.Background(), id))
	assert.Equal(t, "/v1/projects/"+id+"/keys/"+id, rec.only(t).URL.EscapedPath())
}

func TestUserAgent(t *testing.T) {
	tests := []struct {
		name       string
		opts       []keys.Option
		wantPrefix string
	}{
		{"default", nil, "dglease/" + keys.Version + " "},
		{"with product", []keys.Option{keys.WithUserAgent("myapp/1.2")}, "myapp/1.2 dglease/" + keys.Version + " "},
		{"product trimmed", []keys.Option{keys.WithUserAgent("  myapp/1.2  ")}, "myapp/1.2 dglease/" + keys.Version + " "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, rec := recordOne(t, testProject, http.MethodPost, grantURL, `{"access_token":"`+testJWT+`","expires_in":30}`, tt.opts...)
			_, err := c.Grant(context.Background(), 30*time.Second)
			require.NoError(t, err)
			got := rec.only(t).Header.Get("User-Agent")
			assert.Equal(t, tt.wantPrefix+sdkinterfaces.DgAgent, got, "the SDK's agent is kept last")
		})
	}
}
