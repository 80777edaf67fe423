package keys_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
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
			c, rec := recordOne(t, testProject, http.MethodPost, keysURL, createAnswer("key-1"))

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

			ttl := strconv.FormatInt(tt.wantTTL, 10)
			want := `{"comment":"stream for user 42","scopes":["usage:write"],"tags":["dglease","user-42"],"time_to_live_in_seconds":` + ttl + `}`
			assert.JSONEq(t, want, string(req.Body))
			// JSONEq compares numbers as float64: 60.0 would pass it.
			var gotTTL json.Number
			require.NoError(t, json.Unmarshal(bodyFields(t, req.Body)["time_to_live_in_seconds"], &gotTTL))
			assert.Equal(t, ttl, gotTTL.String(), "TTL is a JSON integer")
		})
	}
}

// The bubble's clock starts at 2000-01-01T00:00:00Z, so the fixed dates
// below are in the future, as Create requires.
func TestCreateSendsExpirationDate(t *testing.T) {
	tests := []struct {
		name      string
		expiresAt time.Time
		want      string
	}{
		{"UTC", time.Date(2000, 1, 1, 1, 0, 0, 0, time.UTC), "2000-01-01T01:00:00Z"},
		{"other zone", time.Date(2000, 1, 1, 7, 30, 0, 0, time.FixedZone("IST", 5*3600+1800)), "2000-01-01T02:00:00Z"},
		{"sub-second", time.Date(2000, 1, 1, 0, 10, 0, 123456789, time.UTC), "2000-01-01T00:10:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c, rec := recordOne(t, testProject, http.MethodPost, keysURL, createAnswer("key-1"))

				_, err := c.Create(context.Background(), keys.Spec{
					Comment:   "c",
					Scopes:    []string{"usage:write", "usage:read"},
					ExpiresAt: tt.expiresAt,
				})
				require.NoError(t, err)

				req := rec.only(t)
				assertCommonHeaders(t, req)
				fields := bodyFields(t, req.Body)
				assert.Equal(t, []string{"comment", "expiration_date", "scopes"}, fieldNames(fields))
				assert.Equal(t, `"`+tt.want+`"`, string(fields["expiration_date"]))
				assert.JSONEq(t, `["usage:write","usage:read"]`, string(fields["scopes"]))
			})
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
			c, rec := recordOne(t, testProject, http.MethodPost, keysURL, createAnswer("key-1"))
			_, err := c.Create(context.Background(), tt.spec)
			require.NoError(t, err)
			assert.JSONEq(t, tt.want, string(rec.only(t).Body))
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

// A create answer that names its key but cannot be used returns the key's
// ID in an *UnusableKeyError, so that the caller can delete the key; one
// that names no key has nothing to delete.
func TestCreateUnusableAnswer(t *testing.T) {
	const created = `"created":"2025-01-02T03:04:05Z"`
	tests := []struct {
		name      string
		answer    string
		wantKeyID string // "" when no *UnusableKeyError is wanted
		wantText  string
	}{
		{
			name:      "no secret",
			answer:    `{"api_key_id":"key-1","scopes":["usage:write"],` + created + `}`,
			wantKeyID: "key-1",
			wantText:  "no secret",
		},
		{
			name:      "empty secret",
			answer:    `{"api_key_id":"key-1","key":"","scopes":["usage:write"],` + created + `}`,
			wantKeyID: "key-1",
			wantText:  "no secret",
		},
		{
			name:      "created does not parse",
			answer:    `{"api_key_id":"key-2","key":"` + newSecret + `","scopes":["usage:write"],"created":"yesterday"}`,
			wantKeyID: "key-2",
			wantText:  `created: "yesterday" is not an RFC 3339 time`,
		},
		{
			name:      "expiration_date does not parse",
			answer:    `{"api_key_id":"key-3","key":"` + newSecret + `","scopes":["usage:write"],` + created + `,"expiration_date":"tomorrow"}`,
			wantKeyID: "key-3",
			wantText:  `expiration_date: "tomorrow" is not an RFC 3339 time`,
		},
		{
			name:      "created echoes the secret",
			answer:    `{"api_key_id":"key-4","key":"` + newSecret + `","scopes":["usage:write"],"created":"` + newSecret + `"}`,
			wantKeyID: "key-4",
			wantText:  `created: "[REDACTED]"`,
		},
		{
			name:      "created echoes the project API key",
			answer:    `{"api_key_id":"key-5","key":"` + newSecret + `","scopes":["usage:write"],"created":"` + testAPIKey + `"}`,
			wantKeyID: "key-5",
			wantText:  `created: "[REDACTED]"`,
		},
		{
			name:      "created echoes the secret split by a control character",
			answer:    `{"api_key_id":"key-6","key":"` + newSecret + `","scopes":["usage:write"],"created":"` + newSecret[:10] + `\u0001` + newSecret[10:] + `"}`,
			wantKeyID: "key-6",
			wantText:  `created: "[REDACTED]"`,
		},
		{
			name:     "no api_key_id",
			answer:   `{"key":"` + newSecret + `","scopes":["usage:write"],` + created + `}`,
			wantText: "without api_key_id",
		},
		{
			name:     "api_key_id echoes the project API key, created does not parse",
			answer:   `{"api_key_id":"` + testAPIKey + `","key":"` + newSecret + `","scopes":["usage:write"],"created":"yesterday"}`,
			wantText: "api_key_id in the answer holds a secret",
		},
		{
			name:     "api_key_id holds the new secret",
			answer:   `{"api_key_id":"id-` + newSecret + `","key":"` + newSecret + `","scopes":["usage:write"],` + created + `}`,
			wantText: "api_key_id in the answer holds a secret",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, mock := newClient(t, testProject)
			mock.RegisterResponder(http.MethodPost, keysURL, jsonResponder(200, tt.answer))

			got, err := c.Create(context.Background(), keys.Spec{Scopes: []string{"usage:write"}, TTL: time.Minute})

			assert.Nil(t, got)
			require.Error(t, err)
			assertNoSecret(t, "error", err.Error())
			assert.True(t, strings.HasPrefix(err.Error(), "keys: create key: "), "message %q", err)
			assert.Contains(t, err.Error(), tt.wantText)
			var apiErr *keys.APIError
			assert.False(t, errors.As(err, &apiErr), "a 2xx is not an APIError")

			var unusable *keys.UnusableKeyError
			if tt.wantKeyID == "" {
				assert.False(t, errors.As(err, &unusable), "no key named, nothing to delete")
				return
			}
			require.ErrorAs(t, err, &unusable)
			assert.Equal(t, tt.wantKeyID, unusable.KeyID)
			require.Error(t, unusable.Err)
			assert.Equal(t, unusable.Err, errors.Unwrap(err), "Unwrap returns Err")
			assertNoSecret(t, "Err", unusable.Err.Error())
			assert.Contains(t, err.Error(), "deepgram created key "+tt.wantKeyID+" but ")
			assert.True(t, strings.HasSuffix(err.Error(), "; delete it"), "message %q", err)
		})
	}
}

// The ID an *UnusableKeyError carries is the one to delete.
func TestUnusableKeyErrorKeyIDDeletes(t *testing.T) {
	c, mock := newClient(t, testProject)
	mock.RegisterResponder(http.MethodPost, keysURL, jsonResponder(200, `{"api_key_id":"key-1","scopes":["usage:write"],"created":"2025-01-02T03:04:05Z"}`))
	rec := &recorder{}
	mock.RegisterResponder(http.MethodDelete, keysURL+"/key-1", rec.wrap(jsonResponder(200, `{"message":"deleted"}`)))

	_, err := c.Create(context.Background(), keys.Spec{Scopes: []string{"usage:write"}, TTL: time.Minute})
	var unusable *keys.UnusableKeyError
	require.ErrorAs(t, err, &unusable)
	require.NoError(t, c.Delete(context.Background(), unusable.KeyID))
	assert.Equal(t, "/v1/projects/"+testProject+"/keys/key-1", rec.only(t).URL.Path)
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
	c, rec := recordOne(t, testProject, http.MethodDelete, keysURL+"/key-1", `{"message":"Successfully deleted the API key!"}`)

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
		// In a bubble the clock stands still during the call: Expires is
		// exactly now plus the lifetime.
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ttl := strconv.FormatInt(tt.wantTTL, 10)
				c, rec := recordOne(t, testProject, http.MethodPost, grantURL, `{"access_token":"`+testJWT+`","expires_in":`+ttl+`}`)

				tok, err := c.Grant(context.Background(), tt.ttl)
				require.NoError(t, err)
				assert.Equal(t, testJWT, tok.Secret)
				want := time.Now().Add(time.Duration(tt.wantTTL) * time.Second)
				assert.True(t, tok.Expires.Equal(want), "Expires %v, want %v", tok.Expires, want)

				req := rec.only(t)
				assert.Equal(t, http.MethodPost, req.Method)
				assert.Equal(t, "/v1/auth/grant", req.URL.Path)
				assert.Empty(t, req.URL.RawQuery)
				assertCommonHeaders(t, req)
				assert.JSONEq(t, `{"ttl_seconds":`+ttl+`}`, string(req.Body))
			})
		})
	}
}

func TestGrantUsesServerExpiresIn(t *testing.T) {
	// Deepgram may grant less than asked: Expires follows its answer.
	synctest.Test(t, func(t *testing.T) {
		c, mock := newClient(t, testProject)
		mock.RegisterResponder(http.MethodPost, grantURL, jsonResponder(200, `{"access_token":"`+testJWT+`","expires_in":2.5}`))
		tok, err := c.Grant(context.Background(), time.Minute)
		require.NoError(t, err)
		want := time.Now().Add(2500 * time.Millisecond)
		assert.True(t, tok.Expires.Equal(want), "Expires %v, want %v", tok.Expires, want)
	})
}

func TestGrantNeedsNoProject(t *testing.T) {
	// Grant is not project-scoped: no discovery call.
	c, mock := newClient(t, "")
	mock.RegisterResponder(http.MethodPost, grantURL, jsonResponder(200, `{"access_token":"`+testJWT+`","expires_in":30}`))
	_, err := c.Grant(context.Background(), 30*time.Second)
	require.NoError(t, err)
	assert.Equal(t, 1, mock.GetTotalCallCount())
}
