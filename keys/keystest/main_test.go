package keystest_test

import (
	"os"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/dglease/dglease/keys/keystest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// unsetDeepgramEnv removes every DEEPGRAM_* variable for the test (restored
// afterwards), so that the SDK cannot be redirected or made to log.
func unsetDeepgramEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "DEEPGRAM_") {
			t.Setenv(name, "")
			os.Unsetenv(name)
		}
	}
}

// memServer starts a socket-less server; safe inside synctest bubbles.
func memServer(t *testing.T, opts ...keystest.Option) *keystest.Server {
	t.Helper()
	return keystest.NewServer(t, append([]keystest.Option{keystest.WithoutListener()}, opts...)...)
}
