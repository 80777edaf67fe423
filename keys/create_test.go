package keys_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/keys"
)

func TestCreateSendsTTLBody(t *testing.T) {
	tests := []struct {
		name    string
		ttl     time.Duration
		wantTTL int64
	}{
		{"whole seconds", 30 * time.Second, 30},
		{"rounds 1.5s up", 1500 * time.Millisecond, 2},
		{"rounds 1ns up", time.Nanosecond, 1},
		{"rounds 59.001s up", 59*time.Second + time.Millisecond, 60},
		{"one hour", time.Hour, 3600},
		{"a day and a half", 36 * time.Hour, 129600},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, mock := newClient(t, testProject)
			var rec recorder
			mock.RegisterResponder(http.MethodPost, keysURL, rec.wrap(jsonResponder(200, createAnswer("key-1"))))

			_, err := c.Create(context.Background(), keys.Spec{
				Comment: "stream for user 42",
				Scopes:  []string{"usage:write"},
				Tags:    []string{"dglease", "user-42"},
				TTL:     tt.ttl,
			})
			require.NoError(t, err)

			req := rec.only(t)
			assert.Equal(t, http.MethodPost, req.Method)
			assert.Equal(t, "/v1/projects/"+testProject+"/keys", req.URL.Path)
			assert.Equal(t, "dg.test", req.URL.Host)
			assert.Empty(t, req.URL.RawQuery)
			assertCommonHeaders(t, req)

			want := `{"comment":"stream for user 42","scopes":["usage:write"],"tags":["dglease","user-42"],"time_to_live_in_seconds":` +
				jsonInt(tt.wantTTL) + `}`
			assert.JSONEq(t, want, string(req.Body))
			fields := bodyFields(t, req.Body)
			assert.NotContains(t, fields, "expiration_date", "never both TTL and expiration_date")
			var gotTTL json.Number
			require.NoError(t, json.Unmarshal(fields["time_to_live_in_seconds"], &gotTTL))
			assert.Equal(t, jsonInt(tt.wantTTL), gotTTL.String(), "TTL is a JSON integer")
		})
	}
}

func jsonInt(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestCreateSendsExpirationDate(t *testing.T) {
	tests := []struct {
		name      string
		expiresAt time.Time
	}{
		{"UTC", time.Now().Add(time.Hour).UTC()},
		{"other zone", time.Now().Add(2 * time.Hour).In(time.FixedZone("IST", 5*3600+1800))},
		{"sub-second", time.Now().Add(10*time.Minute + 123456789*time.Nanosecond)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, mock := newClient(t, testProject)
			var rec recorder
			mock.RegisterResponder(http.MethodPost, keysURL, rec.wrap(jsonResponder(200, createAnswer("key-1"))))

			_, err := c.Create(context.Background(), keys.Spec{
				Comment:   "c",
				Scopes:    []string{"usage:write", "usage:read"},
				ExpiresAt: tt.expiresAt,
			})
			require.NoError(t, err)

			req := rec.only(t)
			assertCommonHeaders(t, req)
			fields := bodyFields(t, req.Body)
			assert.ElementsMatch(t, []string{"comment", "scopes", "expiration_date"}, fieldNames(fields))
			var got string
			require.NoError(t, json.Unmarshal(fields["expiration_date"], &got))
			want := tt.expiresAt.UTC().Format(time.RFC3339)
			assert.Equal(t, want, got)
			assert.True(t, strings.HasSuffix(got, "Z"), "%q is UTC", got)
			parsed, err := time.Parse(time.RFC3339, got)
			require.NoError(t, err)
			assert.WithinDuration(t, tt.expiresAt, parsed, time.Second)
			assert.JSONEq(t, `["usage:write","usage:read"]`, string(fields["scopes"]))
		})
	}
}

func TestCreateBodyShape(t *testing.T) {
	tests := []struct {
		name string
		spec keys.Spec
		want string
	}{
		{
			name: "no tags, no comment",
			spec: keys.Spec{Scopes: []string{"usage:write"}, TTL: time.Minute},
			want: `{"comment":"","scopes":["usage:write"],"time_to_live_in_seconds":60}`,
		},
		{
			name: "empty tags slice",
			spec: keys.Spec{Scopes: []string{"usage:write"}, Tags: []string{}, TTL: time.Minute},
			want: `{"comment":"","scopes":["usage:write"],"time_to_live_in_seconds":60}`,
		},
		{
			name: "one tag",
			spec: keys.Spec{Comment: "x", Scopes: []string{"usage:write"}, Tags: []string{"t"}, TTL: time.Minute},
			want: `{"comment":"x","scopes":["usage:write"],"tags":["t"],"time_to_live_in_seconds":60}`,
		},
		{
			name: "unicode comment",
			spec: keys.Spec{Comment: "für Zoë ✓", Scopes: []string{"usage:write"}, TTL: time.Second},
			want: `{"comment":"für Zoë ✓","scopes":["usage:write"],"time_to_live_in_seconds":1}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, mock := newClient(t, testProject)
			var rec recorder
			mock.RegisterResponder(http.MethodPost, keysURL, rec.wrap(jsonResponder(200, createAnswer("key-1"))))
			_, err := c.Create(context.Background(), tt.spec)
			require.NoError(t, err)
			req := rec.only(t)
			assert.JSONEq(t, tt.want, string(req.Body))
			assert.NotContains(t, string(req.Body), "null", "scopes and tags are never null")
		})
	}
}

func TestCreateDecodesAnswer(t *testing.T) {
	tests := []struct {
		name   string
		answer string
		want   keys.Key
	}{
		{
			name:   "full answer",
			answer: createAnswer("key-1"),
			want: keys.Key{
				ID:      "key-1",
				Secret:  newSecret,
				Comment: "stream for user 42",
				Scopes:  []string{"usage:write"},
				Tags:    []string{"dglease", "user-42"},
				Created: time.Date(2025, 1, 2, 3, 4, 5, 123e6, time.UTC),
				Expires: time.Date(2025, 1, 2, 3, 5, 5, 0, time.UTC),
			},
		},
		{
			name:   "no tags, no expiration, offset times",
			answer: `{"api_key_id":"key-2","key":"` + newSecret + `","comment":"","scopes":["usage:write","usage:read"],"created":"2025-06-01T12:00:00+02:00"}`,
			want: keys.Key{
				ID:      "key-2",
				Secret:  newSecret,
				Scopes:  []string{"usage:write", "usage:read"},
				Created: time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC),
			},
		},
		{
			name:   "unknown fields ignored",
			answer: `{"api_key_id":"key-3","key":"` + newSecret + `","scopes":["usage:write"],"created":"2025-01-02T03:04:05Z","extra":{"x":1}}`,
			want: keys.Key{
				ID:      "key-3",
				Secret:  newSecret,
				Scopes:  []string{"usage:write"},
				Created: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, mock := newClient(t, testProject)
			mock.RegisterResponder(http.MethodPost, keysURL, jsonResponder(200, tt.answer))
			got, err := c.Create(context.Background(), keys.Spec{Scopes: []string{"usage:write"}, TTL: time.Minute})
			require.NoError(t, err)
			require.NotNil(t, got)
			assert.Equal(t, tt.want.ID, got.ID)
			assert.Equal(t, tt.want.Secret, got.Secret)
			assert.Equal(t, tt.want.Comment, got.Comment)
			assert.Equal(t, tt.want.Scopes, got.Scopes)
			assert.Equal(t, tt.want.Tags, got.Tags)
			assert.True(t, tt.want.Created.Equal(got.Created), "Created: got %v, want %v", got.Created, tt.want.Created)
			assert.True(t, tt.want.Expires.Equal(got.Expires), "Expires: got %v, want %v", got.Expires, tt.want.Expires)
		})
	}
}

func TestCreateAccepts201(t *testing.T) {
	c, mock := newClient(t, testProject)
	mock.RegisterResponder(http.MethodPost, keysURL, jsonResponder(201, createAnswer("key-1")))
	got, err := c.Create(context.Background(), keys.Spec{Scopes: []string{"usage:write"}, TTL: time.Minute})
	require.NoError(t, err)
	assert.Equal(t, "key-1", got.ID)
	assert.Equal(t, newSecret, got.Secret)
}

func TestKeyExpired(t *testing.T) {
	exp := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		key  keys.Key
		now  time.Time
		want bool
	}{
		{"never expires", keys.Key{}, exp.Add(100 * 365 * 24 * time.Hour), false},
		{"before", keys.Key{Expires: exp}, exp.Add(-time.Nanosecond), false},
		{"at", keys.Key{Expires: exp}, exp, true},
		{"after", keys.Key{Expires: exp}, exp.Add(time.Second), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.key.Expired(tt.now))
		})
	}
}

func TestDelete(t *testing.T) {
	c, mock := newClient(t, testProject)
	var rec recorder
	mock.RegisterResponder(http.MethodDelete, keysURL+"/key-1", rec.wrap(jsonResponder(200, `{"message":"Successfully deleted the API key!"}`)))

	require.NoError(t, c.Delete(context.Background(), "key-1"))

	req := rec.only(t)
	assert.Equal(t, http.MethodDelete, req.Method)
	assert.Equal(t, "/v1/projects/"+testProject+"/keys/key-1", req.URL.Path)
	assert.Equal(t, "/v1/projects/"+testProject+"/keys/key-1", req.URL.EscapedPath())
	assert.Empty(t, req.URL.RawQuery)
	assert.Empty(t, req.Body, "DELETE has no body")
	assertCommonHeaders(t, req)
}

func TestDeleteUnknownKeyIsNotFound(t *testing.T) {
	c, mock := newClient(t, testProject)
	mock.RegisterResponder(http.MethodDelete, keysURL+"/gone", jsonResponder(404, `{"err_code":"NOT_FOUND","err_msg":"API key not found","request_id":"r-1"}`))

	err := c.Delete(context.Background(), "gone")
	require.Error(t, err)
	assert.ErrorIs(t, err, keys.ErrNotFound)
	var apiErr *keys.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, "delete key", apiErr.Op)
	assert.Equal(t, 404, apiErr.StatusCode)
}

func TestGrant(t *testing.T) {
	tests := []struct {
		name    string
		ttl     time.Duration
		wantTTL int64
	}{
		{"minimum", time.Second, 1},
		{"rounds 1.5s up", 1500 * time.Millisecond, 2},
		{"default-like", 30 * time.Second, 30},
		{"maximum", 3600 * time.Second, 3600},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, mock := newClient(t, testProject)
			var rec recorder
			mock.RegisterResponder(http.MethodPost, grantURL, rec.wrap(jsonResponder(200,
				`{"access_token":"`+testJWT+`","expires_in":`+jsonInt(tt.wantTTL)+`}`)))

			before := time.Now()
			tok, err := c.Grant(context.Background(), tt.ttl)
			after := time.Now()
			require.NoError(t, err)
			require.NotNil(t, tok)
			assert.Equal(t, testJWT, tok.Secret)
			lifetime := time.Duration(tt.wantTTL) * time.Second
			assert.False(t, tok.Expires.Before(before.Add(lifetime)), "Expires %v before %v", tok.Expires, before.Add(lifetime))
			assert.False(t, tok.Expires.After(after.Add(lifetime)), "Expires %v after %v", tok.Expires, after.Add(lifetime))

			req := rec.only(t)
			assert.Equal(t, http.MethodPost, req.Method)
			assert.Equal(t, "/v1/auth/grant", req.URL.Path)
			assert.Empty(t, req.URL.RawQuery)
			assertCommonHeaders(t, req)
			assert.JSONEq(t, `{"ttl_seconds":`+jsonInt(tt.wantTTL)+`}`, string(req.Body))
		})
	}
}

func TestGrantUsesServerExpiresIn(t *testing.T) {
	// Deepgram may grant less than asked: Expires follows its answer.
	c, mock := newClient(t, testProject)
	mock.RegisterResponder(http.MethodPost, grantURL, jsonResponder(200, `{"access_token":"`+testJWT+`","expires_in":2.5}`))
	before := time.Now()
	tok, err := c.Grant(context.Background(), time.Minute)
	require.NoError(t, err)
	assert.WithinDuration(t, before.Add(2500*time.Millisecond), tok.Expires, time.Second)
	assert.False(t, tok.Expires.Before(before.Add(2500*time.Millisecond)))
}

func TestGrantNeedsNoProject(t *testing.T) {
	// Grant is not project-scoped: no discovery call.
	c, mock := newClient(t, "")
	mock.RegisterResponder(http.MethodPost, grantURL, jsonResponder(200, `{"access_token":"`+testJWT+`","expires_in":30}`))
	_, err := c.Grant(context.Background(), 30*time.Second)
	require.NoError(t, err)
	assert.Equal(t, 1, mock.GetTotalCallCount())
}
