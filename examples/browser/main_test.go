package main

import (
	"os"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// unsetDeepgramEnv removes every DEEPGRAM_* variable for the test
// (restored afterwards): the tests must never reach the real service.
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
