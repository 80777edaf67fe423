// Package testenv holds what this module's tests share: they must never be
// redirected, re-authenticated or made to log by the Deepgram SDK's
// DEEPGRAM_* environment variables, nor reach the real service.
package testenv

import (
	"bytes"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
)

// ClearDeepgramProcess unsets every DEEPGRAM_* variable for the whole test
// process; call it first in TestMain. A test that sets one with t.Setenv
// gets it unset again when it ends.
func ClearDeepgramProcess() {
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "DEEPGRAM_") {
			os.Unsetenv(name)
		}
	}
}

// Buffer is a bytes.Buffer safe for concurrent use, for capturing what
// loggers and hooks write from their own goroutines. The zero value is
// ready to use.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// CaptureStdio runs fn with os.Stdout and os.Stderr redirected to a pipe and
// returns everything written to them. They are restored however fn ends:
// normally, by a panic, or by t.FailNow.
func CaptureStdio(t testing.TB, fn func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatalf("testenv: pipe: %v", err)
	}
	var out bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(&out, r)
	}()
	oldOut, oldErr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = w, w
	func() {
		defer func() {
			os.Stdout, os.Stderr = oldOut, oldErr
			_ = w.Close()
			<-done
			_ = r.Close()
		}()
		fn()
	}()
	return out.String()
}

// NoSecret reports an error on t for each secret that occurs in text, and
// returns whether none did. A secret counts as occurring when any
// fragment of it of secretFragment bytes does (the whole secret when it is
// shorter), so a secret cut in half by truncation is still caught. The
// failure names what was searched, where the fragment occurs and the
// secret's first four characters, but prints neither text nor the secret:
// a failing check must not leak what it guards. Empty secrets are ignored.
func NoSecret(t testing.TB, what, text string, secrets ...string) bool {
	t.Helper()
	ok := true
	for _, s := range secrets {
		if s == "" {
			continue
		}
		n := min(len(s), secretFragment)
		for j := 0; j+n <= len(s); j++ {
			if i := strings.Index(text, s[j:j+n]); i >= 0 {
				ok = false
				t.Errorf("%s holds a secret (%.4s…, %d bytes): bytes %d to %d of it occur at byte %d; the text is not shown because it holds the secret", what, s, len(s), j, j+n, i)
				break
			}
		}
	}
	return ok
}

// secretFragment is the shortest piece of a secret NoSecret looks for.
const secretFragment = 16

// RequireToolsEnv names the environment variable that makes a missing tool
// fail a test instead of skipping it. .ci/run sets it (to 1) when it runs
// with CI=true, after installing every tool; a user's own CI, which sets
// CI=true but installs no Chromium, still just skips those tests.
const RequireToolsEnv = "DGLEASE_REQUIRE_TOOLS"

// Missing reports that something a test needs from the machine (a
// program, an installed package) is absent: the test is skipped with why,
// except with DGLEASE_REQUIRE_TOOLS=1 (this project's .ci/run, which
// installs everything), where an absence is a failure.
func Missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv(RequireToolsEnv) == "1" {
		t.Fatal(why + " (" + RequireToolsEnv + "=1: .ci/run should have installed it)")
	}
	t.Skip(why)
}
