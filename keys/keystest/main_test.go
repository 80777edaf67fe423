package keystest_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/dglease/dglease/internal/testenv"
	"github.com/dglease/dglease/keys/keystest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// unsetDeepgramEnv removes every DEEPGRAM_* variable for the test (restored
// afterwards), so that the SDK cannot be redirected or made to log.
func unsetDeepgramEnv(t *testing.T) {
	t.Helper()
	testenv.ClearDeepgram(t)
}

// memServer starts a socket-less server; safe inside synctest bubbles.
func memServer(t *testing.T, opts ...keystest.Option) *keystest.Server {
	t.Helper()
	return keystest.NewServer(t, append([]keystest.Option{keystest.WithoutListener()}, opts...)...)
}
