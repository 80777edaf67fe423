package conformance_test

import (
	"testing"

	"github.com/dglease/dglease/internal/testenv"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// No test may be redirected by, or reach, real Deepgram; the Node SDK
	// reads DEEPGRAM_API_KEY and DEEPGRAM_ACCESS_TOKEN, and the latter
	// would override the credential under test.
	testenv.ClearDeepgramProcess()
	goleak.VerifyTestMain(m)
}
