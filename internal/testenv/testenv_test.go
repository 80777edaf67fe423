package testenv_test

import (
	"os"
	"testing"

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
	stdout := os.Stdout
	func() {
		defer func() { _ = recover() }()
		testenv.CaptureStdio(t, func() { panic("boom") })
	}()
	if os.Stdout != stdout {
		t.Fatal("os.Stdout not restored after a panic")
	}
}
