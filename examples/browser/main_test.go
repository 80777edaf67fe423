package main

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/dglease/dglease/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// unsetDeepgramEnv removes every DEEPGRAM_* variable for the test
// (restored afterwards): the tests must never reach the real service.
func unsetDeepgramEnv(t *testing.T) {
	t.Helper()
	testenv.ClearDeepgram(t)
}
