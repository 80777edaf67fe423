package keystest_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/internal/testenv"
	"github.com/dglease/dglease/keys"
	"github.com/dglease/dglease/keys/keystest"
)

// wire sends one raw request through s.Transport and returns the status
// and the decoded JSON body (every answer must be JSON).
func wire(t *testing.T, s *keystest.Server, method, path, auth, body string) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, s.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	res, err := (&http.Client{Transport: s.Transport()}).Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	assert.Equal(t, "application/json", res.Header.Get("Content-Type"))
	var out map[string]any
	require.NoError(t, json.Unmarshal(raw, &out), "body %q is not a JSON object", raw)
	return res.StatusCode, res.Header, out
}

// fieldNames returns the keys of a JSON object, sorted.
func fieldNames[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// wrongKey is a well-formed key the server does not know.
const wrongKey = "feedfacefeedfacefeedfacefeedfacefeedface"

func TestWireErrors(t *testing.T) {
	s := memServer(t)
	tok := "Token " + s.AdminKey()
	keysPath := "/v1/projects/" + s.ProjectID() + "/keys"
	_, _, g := wire(t, s, "POST", "/v1/auth/grant", tok, "")
	jwt := g["access_token"].(string)
	usage := "Token " + s.AddKey(keys.Spec{Comment: "usage only", Scopes: []string{"usage:write"}}).Secret
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)

	tests := []struct {
		name, method, path, auth, body string
		status                         int
		code                           string // err_code (legacy) or category (current)
		current                        bool
	}{
		{"no auth", "GET", "/v1/projects", "", "", 401, "INVALID_AUTH", false},
		{"wrong key", "GET", "/v1/projects", "Token " + wrongKey, "", 401, "INVALID_AUTH", false},
		{"basic auth", "GET", "/v1/projects", "Basic " + s.AdminKey(), "", 401, "INVALID_AUTH", false},
		{"grant token on manage API", "GET", keysPath, "Bearer " + jwt, "", 401, "INVALID_AUTH", false},
		{"grant token on grant", "POST", "/v1/auth/grant", "Bearer " + jwt, "", 401, "INVALID_AUTH", true},
		{"unknown route", "GET", "/v2/nothing", tok, "", 404, "NOT_FOUND", false},
		{"empty segment", "GET", "/v1/projects/", tok, "", 404, "NOT_FOUND", false},
		{"wrong method", "PUT", keysPath, tok, "", 405, "METHOD_NOT_ALLOWED", false},
		{"unknown project", "GET", "/v1/projects/nope/keys", tok, "", 404, "PROJECT_NOT_FOUND", false},
		{"unknown key", "GET", keysPath + "/nope", tok, "", 404, "NOT_FOUND", false},
		{"bad status filter", "GET", keysPath + "?status=all", tok, "", 400, "BAD_REQUEST", false},
		{"bad JSON", "POST", keysPath, tok, `{"scopes":`, 400, "BAD_REQUEST", false},
		{"trailing JSON", "POST", keysPath, tok, `{"scopes":["usage:write"]} {}`, 400, "BAD_REQUEST", false},
		{"empty scopes", "POST", keysPath, tok, `{"comment":"x","scopes":[]}`, 400, "BAD_REQUEST", false},
		{"null scopes", "POST", keysPath, tok, `{"comment":"x","scopes":null}`, 400, "BAD_REQUEST", false},
		{"unknown scope", "POST", keysPath, tok, `{"scopes":["root"]}`, 400, "BAD_REQUEST", false},
		{"empty tag", "POST", keysPath, tok, `{"scopes":["usage:write"],"tags":[""]}`, 400, "BAD_REQUEST", false},
		{"TTL and expiration", "POST", keysPath, tok, `{"scopes":["usage:write"],"time_to_live_in_seconds":60,"expiration_date":"` + future + `"}`, 400, "BAD_REQUEST", false},
		{"zero TTL", "POST", keysPath, tok, `{"scopes":["usage:write"],"time_to_live_in_seconds":0}`, 400, "BAD_REQUEST", false},
		{"negative TTL", "POST", keysPath, tok, `{"scopes":["usage:write"],"time_to_live_in_seconds":-5}`, 400, "BAD_REQUEST", false},
		{"fractional TTL", "POST", keysPath, tok, `{"scopes":["usage:write"],"time_to_live_in_seconds":1.5}`, 400, "BAD_REQUEST", false},
		{"past expiration", "POST", keysPath, tok, `{"scopes":["usage:write"],"expiration_date":"` + past + `"}`, 400, "BAD_REQUEST", false},
		{"expiration without zone", "POST", keysPath, tok, `{"scopes":["usage:write"],"expiration_date":"2999-01-01T00:00:00"}`, 400, "BAD_REQUEST", false},
		{"mint admin", "POST", keysPath, tok, `{"scopes":["admin"],"time_to_live_in_seconds":60}`, 403, "INSUFFICIENT_PERMISSIONS", false},
		{"key without the scope", "GET", keysPath, usage, "", 403, "INSUFFICIENT_PERMISSIONS", false},
		{"grant TTL 0", "POST", "/v1/auth/grant", tok, `{"ttl_seconds":0}`, 400, "BAD_REQUEST", true},
		{"grant TTL 3601", "POST", "/v1/auth/grant", tok, `{"ttl_seconds":3601}`, 400, "BAD_REQUEST", true},
		{"grant bad JSON", "POST", "/v1/auth/grant", tok, `{`, 400, "BAD_REQUEST", true},
		{"grant TTL 0.5", "POST", "/v1/auth/grant", tok, `{"ttl_seconds":0.5}`, 400, "BAD_REQUEST", true},
		{"grant TTL 3600.5", "POST", "/v1/auth/grant", tok, `{"ttl_seconds":3600.5}`, 400, "BAD_REQUEST", true},
		{"grant TTL as a string", "POST", "/v1/auth/grant", tok, `{"ttl_seconds":"30"}`, 400, "BAD_REQUEST", true},
		{"grant TTL out of float range", "POST", "/v1/auth/grant", tok, `{"ttl_seconds":1e400}`, 400, "BAD_REQUEST", true},
		{"grant wrong method", "GET", "/v1/auth/grant", tok, "", 405, "METHOD_NOT_ALLOWED", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, header, body := wire(t, s, tt.method, tt.path, tt.auth, tt.body)
			assert.Equal(t, tt.status, status)
			assert.NotEmpty(t, header.Get("dg-request-id"))
			assert.Equal(t, header.Get("dg-request-id"), body["request_id"])
			if tt.current {
				assert.Equal(t, []string{"category", "details", "message", "request_id"}, fieldNames(body))
				assert.Equal(t, tt.code, body["category"])
			} else {
				assert.Equal(t, []string{"err_code", "err_msg", "request_id"}, fieldNames(body))
				assert.Equal(t, tt.code, body["err_code"])
			}
			if status == 405 {
				assert.NotEmpty(t, header.Get("Allow"))
			}
			// The answer never holds the caller's credential, valid or not.
			if _, secret, ok := strings.Cut(tt.auth, " "); ok {
				raw, err := json.Marshal(body)
				require.NoError(t, err)
				testenv.NoSecret(t, "body", string(raw), secret)
				for name, values := range header {
					testenv.NoSecret(t, "header "+name, strings.Join(values, ", "), secret)
				}
			}
		})
	}
	assert.Len(t, s.Keys(), 2, "no refused create made a key: the admin and the usage key")
}

func TestWireShapes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := memServer(t)
		keysPath := "/v1/projects/" + s.ProjectID() + "/keys"
		for _, scheme := range []string{"Token ", "token ", "TOKEN "} {
			status, _, body := wire(t, s, "GET", "/v1/projects", scheme+s.AdminKey(), "")
			require.Equal(t, 200, status, scheme)
			assert.Equal(t, map[string]any{"projects": []any{map[string]any{"project_id": s.ProjectID(), "name": "keystest"}}}, body)
		}
		tok := "token " + s.AdminKey()

		status, _, created := wire(t, s, "POST", keysPath, tok, `{"comment":"plain","scopes":["usage:write"]}`)
		require.Equal(t, 200, status)
		assert.Equal(t, []string{"api_key_id", "comment", "created", "key", "scopes"}, fieldNames(created), "tags and expiration_date are left out when absent")
		assert.Regexp(t, hex40, created["key"])
		assert.Equal(t, "2000-01-01T00:00:00Z", created["created"], "synctest's clock")

		status, _, tagged := wire(t, s, "POST", keysPath, tok, `{"comment":"tagged","scopes":["usage:write"],"tags":["a","b"],"time_to_live_in_seconds":60}`)
		require.Equal(t, 200, status)
		assert.Equal(t, []string{"api_key_id", "comment", "created", "expiration_date", "key", "scopes", "tags"}, fieldNames(tagged))
		assert.Equal(t, "2000-01-01T00:01:00Z", tagged["expiration_date"])
		assert.Equal(t, []any{"a", "b"}, tagged["tags"])

		status, _, dated := wire(t, s, "POST", keysPath, tok, `{"scopes":["usage:write"],"expiration_date":"2000-01-01T02:00:00+01:00"}`)
		require.Equal(t, 200, status)
		assert.Equal(t, "2000-01-01T01:00:00Z", dated["expiration_date"])

		status, _, listed := wire(t, s, "GET", keysPath, tok, "")
		require.Equal(t, 200, status)
		items := listed["api_keys"].([]any)
		require.Len(t, items, 4)
		item := items[1].(map[string]any)
		assert.Equal(t, []string{"api_key", "member"}, fieldNames(item))
		assert.Equal(t, []string{"email", "first_name", "last_name", "member_id"}, fieldNames(item["member"].(map[string]any)))
		assert.Equal(t, []string{"api_key_id", "comment", "created", "scopes"}, fieldNames(item["api_key"].(map[string]any)), "no secret in a list")

		// Get key: item → member → api_key, as Deepgram's current reference
		// gives it (https://developers.deepgram.com/reference/manage/keys/get).
		status, _, one := wire(t, s, "GET", keysPath+"/"+tagged["api_key_id"].(string), tok, "")
		require.Equal(t, 200, status)
		assert.Equal(t, []string{"item"}, fieldNames(one))
		oneItem := one["item"].(map[string]any)
		assert.Equal(t, []string{"member"}, fieldNames(oneItem))
		oneMember := oneItem["member"].(map[string]any)
		assert.Equal(t, []string{"api_key", "email", "first_name", "last_name", "member_id"}, fieldNames(oneMember))
		assert.Equal(t, item["member"].(map[string]any)["member_id"], oneMember["member_id"])
		oneKey := oneMember["api_key"].(map[string]any)
		assert.Equal(t, []string{"api_key_id", "comment", "created", "expiration_date", "scopes", "tags"}, fieldNames(oneKey), "no secret")
		assert.Equal(t, tagged["api_key_id"], oneKey["api_key_id"])
		assert.Equal(t, tagged["expiration_date"], oneKey["expiration_date"])
		assert.Equal(t, []any{"a", "b"}, oneKey["tags"])

		// Status filters, before and after the tagged key expires.
		count := func(filter string) int {
			_, _, l := wire(t, s, "GET", keysPath+filter, tok, "")
			return len(l["api_keys"].([]any))
		}
		assert.Equal(t, []int{4, 0}, []int{count("?status=active"), count("?status=expired")})
		time.Sleep(time.Minute)
		assert.Equal(t, []int{3, 1, 4}, []int{count("?status=active"), count("?status=expired"), count("")})

		status, _, deleted := wire(t, s, "DELETE", keysPath+"/"+tagged["api_key_id"].(string), tok, "")
		require.Equal(t, 200, status)
		assert.Equal(t, map[string]any{"message": "Successfully deleted the API key!"}, deleted)
		assert.Equal(t, 3, count(""))
	})
}

func TestWireGrant(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := memServer(t)
		tests := []struct {
			name, body string
			ttl        float64
		}{
			{"no body", "", 30},
			{"empty object", "{}", 30},
			{"null ttl", `{"ttl_seconds":null}`, 30},
			{"minimum", `{"ttl_seconds":1}`, 1},
			{"maximum", `{"ttl_seconds":3600}`, 3600},
			// The reference types ttl_seconds as a double: any number is
			// taken, a fraction dropped.
			{"whole number written as a double", `{"ttl_seconds":60.0}`, 60},
			{"exponent", `{"ttl_seconds":1.2e2}`, 120},
			{"fraction", `{"ttl_seconds":30.5}`, 30},
			{"fraction above the minimum", `{"ttl_seconds":1.999}`, 1},
			{"fraction below the maximum", `{"ttl_seconds":3599.9}`, 3599},
		}
		for _, tt := range tests {
			status, _, body := wire(t, s, "POST", "/v1/auth/grant", "Token "+s.AdminKey(), tt.body)
			require.Equal(t, 200, status, tt.name)
			assert.Equal(t, []string{"access_token", "expires_in"}, fieldNames(body))
			assert.Equal(t, tt.ttl, body["expires_in"], tt.name)

			parts := strings.Split(body["access_token"].(string), ".")
			require.Len(t, parts, 3)
			var header, claims map[string]any
			for i, v := range []*map[string]any{&header, &claims} {
				raw, err := base64.RawURLEncoding.DecodeString(parts[i])
				require.NoError(t, err)
				require.NoError(t, json.Unmarshal(raw, v))
			}
			assert.Equal(t, "HS256", header["alg"])
			assert.Equal(t, "usage:write", claims["scope"])
			assert.Equal(t, float64(time.Now().Unix()), claims["iat"])
			assert.Equal(t, float64(time.Now().Unix())+tt.ttl, claims["exp"])
			assert.NotEmpty(t, claims["sub"])
			assert.NotEmpty(t, claims["jti"])
		}
	})
}

func TestRequestsNeverHoldSecrets(t *testing.T) {
	s := memServer(t)
	c := s.Client()
	k, err := c.Create(t.Context(), keys.Spec{Scopes: []string{"usage:write"}, TTL: time.Minute})
	require.NoError(t, err)
	_, err = c.List(t.Context())
	require.NoError(t, err)
	reqs := s.Requests()
	require.Len(t, reqs, 3)
	for _, r := range reqs {
		assert.Equal(t, "token", r.Scheme)
		assert.NotEmpty(t, r.RequestID)
		dump, err := json.Marshal(r)
		require.NoError(t, err)
		testenv.NoSecret(t, "a recorded request", string(dump), s.AdminKey(), k.Secret)
	}
	assert.Equal(t, []keystest.Op{keystest.OpCreate, keystest.OpList, keystest.OpList}, []keystest.Op{reqs[0].Op, reqs[1].Op, reqs[2].Op})
	assert.Equal(t, []string{"status=active", "status=expired"}, []string{reqs[1].Query, reqs[2].Query})
}
