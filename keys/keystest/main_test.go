package keystest_test

import (
	"testing"

	"github.com/dglease/dglease/internal/testenv"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dglease/dglease/keys/keystest"
)

func TestMain(m *testing.M) {
	testenv.ClearDeepgramProcess() // no test may be redirected by, or reach, real Deepgram
	goleak.VerifyTestMain(m)
}

// memServer starts a socket-less server; safe inside synctest bubbles.
func memServer(t *testing.T, opts ...keystest.Option) *keystest.Server {
	t.Helper()
	return keystest.NewServer(t, append([]keystest.Option{keystest.WithoutListener()}, opts...)...)
}

// deletes is how many DELETE calls for key id succeeded, as
// [keystest.KeyState.Deletes] reports; it fails the test if s never held
// the key.
func deletes(t *testing.T, s *keystest.Server, id string) int {
	t.Helper()
	st, ok := s.Key(id)
	require.True(t, ok, "the server never held key %s", id)
	return st.Deletes
}
