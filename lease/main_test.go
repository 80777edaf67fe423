package lease_test

import (
	"os"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "DEEPGRAM_") {
			os.Unsetenv(name)
		}
	}
	goleak.VerifyTestMain(m)
}
