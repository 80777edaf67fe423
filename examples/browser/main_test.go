package main

import (
	"testing"

	"github.com/dglease/dglease/internal/testenv"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	testenv.ClearDeepgramProcess() // no test may be redirected by, or reach, real Deepgram
	goleak.VerifyTestMain(m)
}
