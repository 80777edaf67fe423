package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dglease/dglease/internal/testenv"
)

// goleak also covers the SDK's live client: once the stream is closed and
// Stop has run, none of its goroutines is left.
func TestMain(m *testing.M) {
	testenv.ClearDeepgramProcess() // no test may be redirected by, or reach, real Deepgram
	goleak.VerifyTestMain(m)
}

// secretLike matches a Deepgram API key secret: 40 lower-case hex characters.
var secretLike = regexp.MustCompile(`[0-9a-f]{40}`)

func TestStreamPrintsTranscripts(t *testing.T) {
	var stdout, stderr bytes.Buffer

	err := run(t.Context(), nil, &stdout, &stderr, os.Getenv)

	require.NoError(t, err, "stdout: %s\nstderr: %s", stdout.String(), stderr.String())
	out := stdout.String()
	assert.Contains(t, strings.SplitN(out, "\n", 2)[0], "embedded fake Deepgram")
	assert.Contains(t, out, "WebSocket open; lease released")
	assert.Contains(t, out, "  [ 0.00s] final   hello from the fake deepgram\n")
	assert.Contains(t, out, "  [ 1.90s] final   the quick brown fox jumps over the lazy dog\n")
	assert.Contains(t, out, "Stream closed: 20 results, 20 of them with words.\n")
	// The lease ended, and its key went to the deleter, before CloseStream.
	assert.Regexp(t, `Key [0-9a-f-]{36} is deleted on the fake; its lease ended while the stream was still open\.\n$`, out)
	// Whatever in stdout looks like a secret counts as one.
	testenv.NoSecret(t, "stdout", out, secretLike.FindAllString(out, -1)...)
	assert.Empty(t, stderr.String())
}

func TestStreamSendsAudioFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "half-second.raw")
	require.NoError(t, os.WriteFile(path, tone()[:16000], 0o600)) // 0.5 s
	var stdout, stderr bytes.Buffer

	err := run(t.Context(), []string{"-audio", path}, &stdout, &stderr, os.Getenv)

	require.NoError(t, err, "stderr: %s", stderr.String())
	assert.Contains(t, stdout.String(), "Sent 0.5s of audio")
	assert.Contains(t, stdout.String(), "Stream closed: 5 results, 5 of them with words.\n")
}

func TestStreamRefusesSDKOverrides(t *testing.T) {
	for _, name := range []string{"DEEPGRAM_HOST", "DEEPGRAM_ACCESS_TOKEN"} {
		t.Run(name, func(t *testing.T) {
			t.Setenv(name, "set-by-someone-else")
			var stdout, stderr bytes.Buffer

			err := run(t.Context(), nil, &stdout, &stderr, os.Getenv)

			assert.ErrorContains(t, err, "unset "+name+": the Deepgram SDK would let it override")
			assert.NotContains(t, err.Error(), "set-by-someone-else", "the value is not echoed")
			assert.Empty(t, stdout.String(), "nothing was leased")
		})
	}
}
