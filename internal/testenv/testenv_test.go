package testenv_test

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/internal/testenv"
)

func TestClearDeepgramProcess(t *testing.T) {
	t.Setenv("DEEPGRAM_HOST", "http://evil.invalid")
	t.Setenv("OTHER_VAR", "kept")
	testenv.ClearDeepgramProcess()
	if _, ok := os.LookupEnv("DEEPGRAM_HOST"); ok {
		t.Fatal("DEEPGRAM_HOST still set")
	}
	if os.Getenv("OTHER_VAR") != "kept" {
		t.Fatal("another variable was touched")
	}
}

func TestBufferIsSafeForConcurrentWriters(t *testing.T) {
	var b testenv.Buffer
	done := make(chan struct{})
	for range 4 {
		go func() { b.Write([]byte("ab")); done <- struct{}{} }()
	}
	for range 4 {
		<-done
	}
	if got := b.String(); got != "abababab" {
		t.Fatalf("got %q", got)
	}
}

func TestCaptureStdioRestoresOnPanic(t *testing.T) {
	out := testenv.CaptureStdio(t, func() { os.Stdout.WriteString("to stdout "); os.Stderr.WriteString("to stderr") })
	if out != "to stdout to stderr" {
		t.Fatalf("captured %q", out)
	}
	stdout, stderr := os.Stdout, os.Stderr
	var recovered any
	func() {
		defer func() { recovered = recover() }()
		testenv.CaptureStdio(t, func() { panic("boom") })
	}()
	if recovered != "boom" {
		t.Fatalf("the panic was not passed on: recovered %v", recovered)
	}
	if os.Stdout != stdout || os.Stderr != stderr {
		t.Fatal("os.Stdout or os.Stderr not restored after a panic")
	}
}

// recordingTB captures what a check reports, to test the check itself.
type recordingTB struct {
	testing.TB
	errors []string
}

func (r *recordingTB) Helper() {}
func (r *recordingTB) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func TestNoSecretReportsWithoutPrintingTheSecret(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef01234567"
	rec := &recordingTB{TB: t}
	ok := testenv.NoSecret(rec, "the log", "before "+secret+" after", "", "absent", secret)
	assert.False(t, ok)
	require.Len(t, rec.errors, 1)
	assert.Contains(t, rec.errors[0], "the log")
	assert.Contains(t, rec.errors[0], "0123…")
	assert.Contains(t, rec.errors[0], "at byte 7")
	assert.False(t, strings.Contains(rec.errors[0], secret), "the report must not hold the secret")

	rec = &recordingTB{TB: t}
	assert.True(t, testenv.NoSecret(rec, "the log", "nothing here", secret))
	assert.Empty(t, rec.errors)
}

func TestNoSecretCatchesATruncatedSecret(t *testing.T) {
	const secret = "0123456789abcdefghijklmnopqrstuvwxyzABCD"
	rec := &recordingTB{TB: t}
	// The last 16 bytes only, as a cut-short quote would leave them.
	assert.False(t, testenv.NoSecret(rec, "the error", `"xxxx`+secret[24:]+`…"`, secret))
	require.Len(t, rec.errors, 1)
	assert.Contains(t, rec.errors[0], "bytes 24 to 40")
	assert.False(t, strings.Contains(rec.errors[0], secret[24:]), "the report must not hold the fragment")

	rec = &recordingTB{TB: t}
	// 15 bytes of it are not enough to count.
	assert.True(t, testenv.NoSecret(rec, "the error", secret[:15], secret))
	assert.Empty(t, rec.errors)
}

func TestMissingSkipsOrFailsWhenToolsAreRequired(t *testing.T) {
	for _, tc := range []struct{ ci, require string }{{"", ""}, {"true", ""}, {"true", "1"}} {
		t.Run("CI="+tc.ci+",require="+tc.require, func(t *testing.T) {
			t.Setenv("CI", tc.ci) // a user's CI sets it and installs no Chromium: still a skip
			t.Setenv(testenv.RequireToolsEnv, tc.require)
			rec := &skipRecorder{recordingTB: recordingTB{TB: t}}
			done := make(chan struct{})
			go func() { // Skip and Fatal end the goroutine
				defer close(done)
				testenv.Missing(rec, "no widget")
			}()
			<-done
			if tc.require == "1" {
				assert.Equal(t, []string{"no widget (DGLEASE_REQUIRE_TOOLS=1: .ci/run should have installed it)"}, rec.fatals)
				assert.Empty(t, rec.skips)
			} else {
				assert.Equal(t, []string{"no widget"}, rec.skips)
				assert.Empty(t, rec.fatals)
			}
		})
	}
}

// skipRecorder records Skip and Fatal, which end the calling goroutine.
type skipRecorder struct {
	recordingTB
	skips, fatals []string
}

func (r *skipRecorder) Skip(args ...any) {
	r.skips = append(r.skips, fmt.Sprint(args...))
	runtime.Goexit()
}

func (r *skipRecorder) Fatal(args ...any) {
	r.fatals = append(r.fatals, fmt.Sprint(args...))
	runtime.Goexit()
}
