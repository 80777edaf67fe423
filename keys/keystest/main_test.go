package keystest_test

import (
	"testing"

	"github.com/dglease/dglease/internal/testenv"

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
