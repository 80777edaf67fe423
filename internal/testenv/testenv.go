// Package testenv holds what this module's tests share: they must never be
// redirected, re-authenticated or made to log by the Deepgram SDK's
// DEEPGRAM_* environment variables, nor reach the real service.
package testenv

import (
	"os"
	"strings"
	"testing"
)

// ClearDeepgram unsets every DEEPGRAM_* variable for the duration of t and
// restores them when t ends. Like t.Setenv, it must not be used in parallel
// tests.
func ClearDeepgram(t testing.TB) {
	t.Helper()
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "DEEPGRAM_") {
			t.Setenv(name, "") // registers the restore
			if err := os.Unsetenv(name); err != nil {
				t.Fatalf("testenv: unset %s: %v", name, err)
			}
		}
	}
}

// ClearDeepgramProcess unsets every DEEPGRAM_* variable for the whole test
// process; call it first in TestMain.
func ClearDeepgramProcess() {
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "DEEPGRAM_") {
			os.Unsetenv(name)
		}
	}
}
