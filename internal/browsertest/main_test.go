package browsertest_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/dglease/dglease/internal/testenv"
)

func TestMain(m *testing.M) {
	testenv.ClearDeepgramProcess()
	goleak.VerifyTestMain(m)
}
