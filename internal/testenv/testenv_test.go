package testenv_test

import (
	"os"
	"testing"

	"github.com/dglease/dglease/internal/testenv"
)

func TestClearDeepgramRestores(t *testing.T) {
	t.Setenv("DEEPGRAM_HOST", "http://evil.invalid")
	t.Setenv("OTHER_VAR", "kept")
	t.Run("cleared", func(t *testing.T) {
		testenv.ClearDeepgram(t)
		if _, ok := os.LookupEnv("DEEPGRAM_HOST"); ok {
			t.Fatal("DEEPGRAM_HOST still set")
		}
		if os.Getenv("OTHER_VAR") != "kept" {
			t.Fatal("another variable was touched")
		}
	})
	if got := os.Getenv("DEEPGRAM_HOST"); got != "http://evil.invalid" {
		t.Fatalf("not restored: %q", got)
	}
}
