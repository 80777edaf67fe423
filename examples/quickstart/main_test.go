package main

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dglease/dglease/internal/testenv"
)

func TestMain(m *testing.M) {
	testenv.ClearDeepgramProcess() // no test may be redirected by, or reach, real Deepgram
	goleak.VerifyTestMain(m)
}

// secretLike matches a Deepgram API key secret: 40 lower-case hex characters.
// Key IDs (UUIDs) and lease IDs (16 hex) do not match.
var secretLike = regexp.MustCompile(`[0-9a-f]{40}`)

func TestQuickstartLeasesAndDeletesAKey(t *testing.T) {
	var stdout, stderr bytes.Buffer

	err := run(t.Context(), nil, &stdout, &stderr, os.Getenv)

	require.NoError(t, err, "stderr: %s", stderr.String())
	out := stdout.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	assert.Contains(t, lines[0], "embedded fake Deepgram", "the first line says the fake is used")
	assert.Contains(t, out, "for user-42: scope usage:write")
	assert.Contains(t, out, "The fake now holds 2 live keys")
	assert.Regexp(t, `Manager closed: key [0-9a-f-]{36} is deleted on the fake; 1 live key left`, lines[len(lines)-1])
	// Whatever in stdout looks like a secret counts as one.
	testenv.NoSecret(t, "stdout", out, secretLike.FindAllString(out, -1)...)
	assert.Empty(t, stderr.String())
}

func TestQuickstartRefusesArguments(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"extra"}, &stdout, &stderr, os.Getenv)
	assert.ErrorContains(t, err, "unexpected arguments")
	assert.Empty(t, stdout.String())
}
