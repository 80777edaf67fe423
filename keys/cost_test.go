package keys_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	sdkinterfaces "github.com/deepgram/deepgram-go-sdk/v3/pkg/client/interfaces/v1"
	sdkmanage "github.com/deepgram/deepgram-go-sdk/v3/pkg/client/manage"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/keys"
)

// answerTransport answers a create and a delete of key-1 from memory, with
// the least work a RoundTripper can do.
type answerTransport struct{}

func (answerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	body := `{"message":"ok"}`
	if req.Method == http.MethodPost {
		body = createAnswer("key-1")
	}
	return &http.Response{
		StatusCode:    http.StatusOK,
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}, nil
}

// A create and a delete through keys.Client allocate well under what the
// SDK's APIRequest allocates for the same two calls: APIRequest compiles two
// regular expressions on every call, the client builds its URLs itself.
// Allocations are counted, not timed, so the comparison is deterministic;
// both sides use the same transport, so its cost is on both.
func TestCallsCostLessThanAPIRequest(t *testing.T) {
	ctx := context.Background()
	c, err := keys.New(testAPIKey, testProject, keys.WithHost(testHost), keys.WithHTTPClient(&http.Client{Transport: answerTransport{}}))
	require.NoError(t, err)
	client := testing.AllocsPerRun(50, func() {
		k, err := c.Create(ctx, validSpec)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Delete(ctx, k.ID); err != nil {
			t.Fatal(err)
		}
	})

	sdk := sdkmanage.New(testAPIKey, &sdkinterfaces.ClientOptions{Host: testHost})
	require.NotNil(t, sdk)
	sdk.HTTPClient.Client.Transport = answerTransport{}
	apiRequest := testing.AllocsPerRun(50, func() {
		body, err := json.Marshal(map[string]any{"comment": validSpec.Comment, "scopes": validSpec.Scopes, "time_to_live_in_seconds": 60})
		if err != nil {
			t.Fatal(err)
		}
		var k struct {
			ID string `json:"api_key_id"`
		}
		if err := sdk.APIRequest(ctx, http.MethodPost, "v1/projects/%s/keys", bytes.NewReader(body), &k, testProject); err != nil {
			t.Fatal(err)
		}
		var msg struct{}
		if err := sdk.APIRequest(ctx, http.MethodDelete, "v1/projects/%s/keys/%s", nil, &msg, testProject, k.ID); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("allocations per create+delete: keys.Client %.0f, SDK APIRequest %.0f", client, apiRequest)
	assert.Less(t, client, apiRequest/2, "keys.Client allocates under half of APIRequest")
}
