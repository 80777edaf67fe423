package keystest_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/dglease/dglease/keys/keystest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// memServer starts a socket-less server; safe inside synctest bubbles.
func memServer(t *testing.T, opts ...keystest.Option) *keystest.Server {
	t.Helper()
	return keystest.NewServer(t, append([]keystest.Option{keystest.WithoutListener()}, opts...)...)
}
