package keystest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	authapi "github.com/deepgram/deepgram-go-sdk/v3/pkg/api/auth/v1"
	authtypes "github.com/deepgram/deepgram-go-sdk/v3/pkg/api/auth/v1/interfaces"
	manageapi "github.com/deepgram/deepgram-go-sdk/v3/pkg/api/manage/v1"
	managetypes "github.com/deepgram/deepgram-go-sdk/v3/pkg/api/manage/v1/interfaces"
	"github.com/deepgram/deepgram-go-sdk/v3/pkg/api/version"
	authclient "github.com/deepgram/deepgram-go-sdk/v3/pkg/client/auth"
	"github.com/deepgram/deepgram-go-sdk/v3/pkg/client/interfaces"
	manageclient "github.com/deepgram/deepgram-go-sdk/v3/pkg/client/manage"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/internal/testaudio"
	"github.com/dglease/dglease/keys"
	"github.com/dglease/dglease/keys/keystest"
)

// The official SDK (v3.6.0) talks to the socket server. Its constructors
// read DEEPGRAM_* variables, hence testenv.ClearDeepgramProcess in TestMain;
// client.New/Init are not used (Init calls flag.Parse).
func TestOfficialSDK(t *testing.T) {
	s := keystest.NewServer(t)
	seeded := s.AddKey(keys.Spec{Comment: "seeded", Scopes: []string{"usage:write"}, Tags: []string{"x"}, TTL: time.Hour})

	mc := manageclient.New(s.AdminKey(), &interfaces.ClientOptions{Host: s.URL})
	require.NotNil(t, mc)
	defer mc.HTTPClient.CloseIdleConnections()
	m := manageapi.New(mc)
	require.NotNil(t, m)

	t.Run("ListKeys decodes the list", func(t *testing.T) {
		res, err := m.ListKeys(t.Context(), s.ProjectID())
		require.NoError(t, err)
		require.Len(t, res.APIKeys, 2)
		got := res.APIKeys[1]
		assert.Equal(t, seeded.ID, got.APIKey.APIKeyID)
		assert.Equal(t, "seeded", got.APIKey.Comment)
		assert.Equal(t, []string{"usage:write"}, got.APIKey.Scopes)
		assert.Empty(t, got.APIKey.Key)
		assert.NotEmpty(t, got.APIKey.Created)
		assert.Equal(t, "admin@keystest.invalid", got.Member.Email)
		assert.NotEmpty(t, got.Member.MemberID)
	})

	// The fake answers get key in the current reference's shape,
	// {"item":{"member":{...,"api_key":{...}}}}; the Go SDK v3 still
	// decodes the older flat one, so its GetKey finds nothing (see "Where
	// the fake differs"). APIRequest into the reference's shape reads it.
	t.Run("GetKey: the reference's shape, not the Go SDK's", func(t *testing.T) {
		res, err := m.GetKey(t.Context(), s.ProjectID(), seeded.ID)
		require.NoError(t, err)
		assert.Empty(t, res.APIKey.APIKeyID, "the Go SDK v3 reads the flat shape")

		var got struct {
			Item struct {
				Member struct {
					MemberID string `json:"member_id"`
					APIKey   struct {
						APIKeyID string   `json:"api_key_id"`
						Tags     []string `json:"tags"`
					} `json:"api_key"`
				} `json:"member"`
			} `json:"item"`
		}
		require.NoError(t, mc.APIRequest(t.Context(), "GET", version.KeysByIDURI, nil, &got, s.ProjectID(), seeded.ID))
		assert.Equal(t, seeded.ID, got.Item.Member.APIKey.APIKeyID)
		assert.Equal(t, []string{"x"}, got.Item.Member.APIKey.Tags)
		assert.NotEmpty(t, got.Item.Member.MemberID)
	})

	t.Run("APIRequest create and delete", func(t *testing.T) {
		body, err := json.Marshal(map[string]any{"comment": "sdk", "scopes": []string{"usage:write"}, "time_to_live_in_seconds": 60})
		require.NoError(t, err)
		var created managetypes.APIKey
		require.NoError(t, mc.APIRequest(t.Context(), "POST", version.KeysURI, bytes.NewReader(body), &created, s.ProjectID()))
		assert.Regexp(t, hex40, created.Key)
		assert.Equal(t, "sdk", created.Comment)

		var msg managetypes.MessageResult
		require.NoError(t, mc.APIRequest(t.Context(), "DELETE", version.KeysByIDURI, nil, &msg, s.ProjectID(), created.APIKeyID))
		assert.Equal(t, "Successfully deleted the API key!", msg.Message)
		assert.Equal(t, 1, deletes(t, s, created.APIKeyID))

		err = mc.APIRequest(t.Context(), "DELETE", version.KeysByIDURI, nil, &msg, s.ProjectID(), created.APIKeyID)
		var se *interfaces.StatusError
		require.ErrorAs(t, err, &se)
		assert.Equal(t, 404, se.Resp.StatusCode)
	})

	t.Run("APIRequest 400 parses as a Deepgram error", func(t *testing.T) {
		var created managetypes.APIKey
		err := mc.APIRequest(t.Context(), "POST", version.KeysURI, bytes.NewReader([]byte(`{"scopes":[]}`)), &created, s.ProjectID())
		var se *interfaces.StatusError
		require.True(t, errors.As(err, &se), "%v", err)
		require.NotNil(t, se.DeepgramError)
		assert.Equal(t, "BAD_REQUEST", se.DeepgramError.ErrCode)
	})

	t.Run("GrantToken decodes the grant", func(t *testing.T) {
		ac := authclient.New(s.AdminKey(), &interfaces.ClientOptions{Host: s.URL})
		require.NotNil(t, ac)
		defer ac.HTTPClient.CloseIdleConnections()
		a := authapi.New(ac)
		tok, err := a.GrantToken(t.Context(), nil)
		require.NoError(t, err)
		assert.NotEmpty(t, tok.AccessToken)
		assert.Equal(t, 30.0, tok.ExpiresIn, "default TTL without a body")

		ttl := 120
		tok, err = a.GrantToken(t.Context(), &authtypes.GrantTokenRequest{TTLSeconds: &ttl})
		require.NoError(t, err)
		assert.Equal(t, 120.0, tok.ExpiresIn)
	})

	t.Run("GetUsage reads the recorded streams", func(t *testing.T) {
		awayFromMidnight(s)
		k := usageKey(t, s, time.Hour, "sdk-user")
		stream(t, s, k.Secret, testaudio.Silence(1250*time.Millisecond))
		// The SDK's GetUsage sends its UsageRequest as the body of the GET,
		// which Deepgram (and the fake) ignore: filters go in the query,
		// through the SDK's ParametersContext.
		ctx := context.WithValue(t.Context(), interfaces.ParametersContext{}, map[string][]string{"tag": {"sdk-user"}})
		res, err := m.GetUsage(ctx, s.ProjectID(), &managetypes.UsageRequest{Tag: []string{"ignored"}})
		require.NoError(t, err)
		require.Len(t, res.Results, 1)
		assert.InDelta(t, 1.25, res.Results[0].Hours*3600, 1e-9)
		assert.Equal(t, 1, res.Results[0].Requests)
		assert.Equal(t, managetypes.Resolution{Units: "day", Amount: 1}, res.Resolution)
		assert.Equal(t, s.Now().UTC().Format("2006-01-02"), res.Results[0].Start)

		// Every field the fake answers has a home in the SDK's type.
		var raw json.RawMessage
		require.NoError(t, mc.APIRequest(ctx, "GET", version.UsageURI, nil, &raw, s.ProjectID()))
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		var strict managetypes.UsageResult
		require.NoError(t, dec.Decode(&strict), "answer %s", raw)
	})

	t.Run("keys.Client over the socket", func(t *testing.T) {
		c, err := keys.New(s.AdminKey(), "", keys.WithHost(s.URL))
		require.NoError(t, err)
		k, err := c.Create(t.Context(), keys.Spec{Scopes: []string{"usage:write"}, TTL: time.Minute})
		require.NoError(t, err)
		require.NoError(t, c.Delete(t.Context(), k.ID))
	})
}
