package keys_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jarcoal/httpmock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/keys"
)

const member = `"member":{"member_id":"m-1","email":"a@example.com","first_name":"A","last_name":"B"}`

const activeAnswer = `{"api_keys":[
 {` + member + `,"api_key":{"api_key_id":"key-1","comment":"one","scopes":["usage:write"],"tags":["dglease"],"created":"2025-01-01T00:00:00Z"}},
 {` + member + `,"api_key":{"api_key_id":"key-2","comment":"two","scopes":["usage:write","usage:read"],"created":"2025-01-02T00:00:00Z","expiration_date":"2030-01-01T00:00:00Z"}}
]}`

// expiredAnswer repeats key-2 (a key listed under both filters must come
// back once) and carries a secret, which List must drop.
const expiredAnswer = `{"api_keys":[
 {` + member + `,"api_key":{"api_key_id":"key-2","comment":"two again","scopes":["usage:write"],"created":"2025-01-02T00:00:00Z"}},
 {` + member + `,"api_key":{"api_key_id":"key-3","key":"` + newSecret + `","comment":"three","scopes":["usage:write"],"created":"2025-01-03T00:00:00Z","expiration_date":"2025-01-03T00:01:00Z"}}
]}`

// listResponder answers by the status query parameter.
func listResponder(t *testing.T, byStatus map[string]httpmock.Responder) httpmock.Responder {
	return func(req *http.Request) (*http.Response, error) {
		status := req.URL.Query().Get("status")
		r, ok := byStatus[status]
		if !ok {
			t.Errorf("unexpected list query %q", req.URL.RawQuery)
			return httpmock.NewStringResponse(400, "bad status"), nil
		}
		return r(req)
	}
}

func TestListAsksForActiveAndExpired(t *testing.T) {
	c, mock := newClient(t, testProject)
	var rec recorder
	mock.RegisterResponder(http.MethodGet, keysURL, rec.wrap(listResponder(t, map[string]httpmock.Responder{
		"active":  jsonResponder(200, activeAnswer),
		"expired": jsonResponder(200, expiredAnswer),
	})))

	_, err := c.List(context.Background())
	require.NoError(t, err)

	reqs := rec.all()
	require.Len(t, reqs, 2)
	var gotQueries []url.Values
	for _, req := range reqs {
		assert.Equal(t, http.MethodGet, req.Method)
		assert.Equal(t, "/v1/projects/"+testProject+"/keys", req.URL.Path)
		assert.Empty(t, req.Body)
		assertCommonHeaders(t, req)
		gotQueries = append(gotQueries, req.URL.Query())
	}
	wantQueries := []url.Values{{"status": {"active"}}, {"status": {"expired"}}}
	assert.ElementsMatch(t, wantQueries, gotQueries)
}

func TestListMergesDedupesAndDropsSecrets(t *testing.T) {
	c, mock := newClient(t, testProject)
	mock.RegisterResponder(http.MethodGet, keysURL, listResponder(t, map[string]httpmock.Responder{
		"active":  jsonResponder(200, activeAnswer),
		"expired": jsonResponder(200, expiredAnswer),
	}))

	got, err := c.List(context.Background())
	require.NoError(t, err)

	want := []keys.Key{
		{ID: "key-1", Comment: "one", Scopes: []string{"usage:write"}, Tags: []string{"dglease"},
			Created: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)},
		{ID: "key-2", Comment: "two", Scopes: []string{"usage:write", "usage:read"},
			Created: time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC), Expires: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)},
		{ID: "key-3", Comment: "three", Scopes: []string{"usage:write"},
			Created: time.Date(2025, 1, 3, 0, 0, 0, 0, time.UTC), Expires: time.Date(2025, 1, 3, 0, 1, 0, 0, time.UTC)},
	}
	require.Len(t, got, len(want))
	for i := range want {
		assert.Equal(t, want[i].ID, got[i].ID, "[%d].ID", i)
		assert.True(t, got[i].Secret == "", "[%d] kept its secret", i) // not printed
		assert.Equal(t, want[i].Comment, got[i].Comment, "[%d].Comment", i)
		assert.Equal(t, want[i].Scopes, got[i].Scopes, "[%d].Scopes", i)
		assert.Equal(t, want[i].Tags, got[i].Tags, "[%d].Tags", i)
		assert.True(t, want[i].Created.Equal(got[i].Created), "[%d].Created = %v", i, got[i].Created)
		assert.True(t, want[i].Expires.Equal(got[i].Expires), "[%d].Expires = %v", i, got[i].Expires)
	}
}

func TestListEmpty(t *testing.T) {
	tests := []struct {
		name   string
		answer string
	}{
		{"empty array", `{"api_keys":[]}`},
		{"null array", `{"api_keys":null}`},
		{"missing array", `{}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, mock := newClient(t, testProject)
			mock.RegisterResponder(http.MethodGet, keysURL, jsonResponder(200, tt.answer))
			got, err := c.List(context.Background())
			require.NoError(t, err)
			assert.Empty(t, got)
			assert.Equal(t, 2, mock.GetTotalCallCount())
		})
	}
}

func TestListFailsWhenEitherCallFails(t *testing.T) {
	for _, failing := range []string{"active", "expired"} {
		t.Run(failing, func(t *testing.T) {
			c, mock := newClient(t, testProject)
			byStatus := map[string]httpmock.Responder{
				"active":  jsonResponder(200, activeAnswer),
				"expired": jsonResponder(200, expiredAnswer),
			}
			byStatus[failing] = jsonResponder(503, `{"category":"UNAVAILABLE","message":"try later"}`)
			mock.RegisterResponder(http.MethodGet, keysURL, listResponder(t, byStatus))

			got, err := c.List(context.Background())
			require.Error(t, err)
			assert.Nil(t, got, "no partial list")
			var apiErr *keys.APIError
			require.ErrorAs(t, err, &apiErr)
			assert.Equal(t, 503, apiErr.StatusCode)
			assert.Equal(t, "list "+failing+" keys", apiErr.Op)
		})
	}
}

func TestListRejectsBadTimes(t *testing.T) {
	c, mock := newClient(t, testProject)
	mock.RegisterResponder(http.MethodGet, keysURL, jsonResponder(200,
		`{"api_keys":[{"api_key":{"api_key_id":"key-1","scopes":[],"created":"yesterday"}}]}`))
	_, err := c.List(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "keys: ")
	assert.Contains(t, err.Error(), "created")
}

// A time that echoes the project API key does not carry it into the error.
func TestListBadTimeEchoingTheAPIKeyIsScrubbed(t *testing.T) {
	c, mock := newClient(t, testProject)
	mock.RegisterResponder(http.MethodGet, keysURL, jsonResponder(200,
		`{"api_keys":[{"api_key":{"api_key_id":"key-1","scopes":[],"created":"`+testAPIKey[:20]+`\u0000`+testAPIKey[20:]+`"}}]}`))
	_, err := c.List(context.Background())
	assertKeysError(t, err, "created", "[REDACTED]")
}

// A key ID that echoes the project API key is refused, never quoted.
func TestListKeyIDEchoingTheAPIKeyIsNotShown(t *testing.T) {
	c, mock := newClient(t, testProject)
	mock.RegisterResponder(http.MethodGet, keysURL, jsonResponder(200,
		`{"api_keys":[{"api_key":{"api_key_id":"`+testAPIKey+`","scopes":[],"created":"yesterday"}}]}`))
	_, err := c.List(context.Background())
	assertKeysError(t, err, "api_key_id in the answer holds a secret")
}

// An answer larger than the limit is an error that says so, never a list
// cut short (or a JSON error that hides why).
func TestListRefusesAnOversizedAnswer(t *testing.T) {
	defer keys.SetMaxAnswerBody(1024)()
	c, mock := newClient(t, testProject)
	var items []string
	for i := range 50 {
		items = append(items, fmt.Sprintf(`{"member":{"member_id":"m"},"api_key":{"api_key_id":"key-%d","comment":"c","scopes":["usage:write"],"created":"2025-01-02T03:04:05Z"}}`, i))
	}
	mock.RegisterResponder(http.MethodGet, keysURL, jsonResponder(200, `{"api_keys":[`+strings.Join(items, ",")+`]}`))
	_, err := c.List(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "answer exceeds 1024 bytes")
}

func TestListExpiredAsksOnlyForExpired(t *testing.T) {
	c, rec := recordOne(t, testProject, http.MethodGet, keysURL, expiredAnswer)

	got, err := c.ListExpired(context.Background())
	require.NoError(t, err)

	req := rec.only(t)
	assert.Equal(t, http.MethodGet, req.Method)
	assert.Equal(t, "/v1/projects/"+testProject+"/keys", req.URL.Path)
	assert.Equal(t, url.Values{"status": {"expired"}}, req.URL.Query())
	assert.Empty(t, req.Body)
	assertCommonHeaders(t, req)

	want := []keys.Key{
		{ID: "key-2", Comment: "two again", Scopes: []string{"usage:write"},
			Created: time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC)},
		{ID: "key-3", Comment: "three", Scopes: []string{"usage:write"}, // its secret dropped
			Created: time.Date(2025, 1, 3, 0, 0, 0, 0, time.UTC), Expires: time.Date(2025, 1, 3, 0, 1, 0, 0, time.UTC)},
	}
	require.Len(t, got, len(want))
	for i := range got {
		assert.True(t, got[i].Secret == "", "[%d] kept its secret", i) // not printed
		got[i].Secret = ""
	}
	assert.Equal(t, want, got)
}
