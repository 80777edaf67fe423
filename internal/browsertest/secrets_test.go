package browsertest_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/internal/browsertest"
	"github.com/dglease/dglease/keys"
	"github.com/dglease/dglease/keys/keystest"
)

func TestSecretRecorderRecordsKeysAndGrantTokens(t *testing.T) {
	fake := keystest.NewServer(t, keystest.WithoutListener())
	rec := &browsertest.SecretRecorder{KeyService: fake.Client()}
	k, err := rec.Create(t.Context(), keys.Spec{Comment: "recorded", Scopes: []string{"usage:write"}, TTL: time.Minute})
	require.NoError(t, err)
	tok, err := rec.Grant(t.Context(), time.Minute)
	require.NoError(t, err)
	assert.Equal(t, []string{k.Secret, tok.Secret}, rec.Secrets())
}
