package keys

import (
	"context"
	"testing"

	sdkversion "github.com/deepgram/deepgram-go-sdk/v3/pkg/api/version"
	sdkinterfaces "github.com/deepgram/deepgram-go-sdk/v3/pkg/client/interfaces/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The client builds every URL itself, as the SDK's APIRequest (through
// version.GetManageAPI) built it before: same path, same escaping of IDs,
// same query.
func TestURLIsTheOneAPIRequestBuilds(t *testing.T) {
	// Every character checkID lets through, in one ID.
	var printable []byte
	for b := byte(0x21); b < 0x7f; b++ {
		if checkID("id", string(b)) == nil {
			printable = append(printable, b)
		}
	}
	tests := []struct {
		name   string
		path   string
		query  map[string][]string
		params []any
	}{
		{"projects", "v1/projects", nil, nil},
		{"grant", "v1/auth/grant", nil, nil},
		{"keys", "v1/projects/%s/keys", nil, []any{"proj-123"}},
		{"list with status", "v1/projects/%s/keys", map[string][]string{"status": {"expired"}}, []any{"proj-123"}},
		{"delete", "v1/projects/%s/keys/%s", nil, []any{"3f0c6f4e-8a8b-4d0b-9e3a-1b2c3d4e5f60", "key-1"}},
		{"every allowed character", "v1/projects/%s/keys/%s", nil, []any{string(printable), string(printable)}},
		{"usage query", "v1/projects/%s/usage", map[string][]string{
			"tag":   {"dglease:user=a%20b&c=d+é"},
			"start": {"2025-01-02"},
			"end":   {"2025-01-03"},
		}, []any{"p"}},
	}
	for _, host := range []string{"https://api.deepgram.com", "http://127.0.0.1:8080"} {
		c, err := New("k", "p", WithHost(host))
		require.NoError(t, err)
		for _, tt := range tests {
			t.Run(host+" "+tt.name, func(t *testing.T) {
				ctx := context.Background()
				if tt.query != nil {
					ctx = context.WithValue(ctx, sdkinterfaces.ParametersContext{}, tt.query)
				}
				want, err := sdkversion.GetManageAPI(ctx, host, "v1", tt.path, nil, tt.params...)
				require.NoError(t, err)
				assert.Equal(t, want, c.url(tt.path, tt.query, tt.params))
			})
		}
	}
}
