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
	"github.com/dglease/dglease/keys/keystest"
	"github.com/dglease/dglease/lease"
)

func TestMain(m *testing.M) {
	testenv.ClearDeepgramProcess() // no test may be redirected by, or reach, real Deepgram
	goleak.VerifyTestMain(m)
}

// secretLike matches a Deepgram API key secret: 40 lower-case hex characters.
var secretLike = regexp.MustCompile(`[0-9a-f]{40}`)

func TestSweepDeletesExpiredMarkedKeys(t *testing.T) {
	var stdout, stderr bytes.Buffer

	err := run(t.Context(), nil, &stdout, &stderr, os.Getenv)

	require.NoError(t, err, "stderr: %s", stderr.String())
	out := stdout.String()
	assert.Contains(t, strings.SplitN(out, "\n", 2)[0], "embedded fake Deepgram")
	assert.Contains(t, out, "Deleting 20 expired keys that carry dglease's marker:\n  2/20 (10%)\n")
	assert.Contains(t, out, "  20/20 (100%)\n")
	assert.Equal(t, 10, strings.Count(out, "): deleted\n"), "the first 10 keys are named")
	assert.Contains(t, out, "  ... and 10 more\n")
	assert.Contains(t, out, "Summary: listed 21 (the project's expired keys), marked 20, expired 20, deleted 20, failed 0.\n")
	assert.Contains(t, out, "On the fake now: 20 marked keys deleted, 0 marked expired keys left, 2 live leased keys untouched, 2 keys without the marker untouched (1 expired).\n")
	// Whatever in stdout looks like a secret counts as one.
	testenv.NoSecret(t, "stdout", out, secretLike.FindAllString(out, -1)...)
	assert.Empty(t, stderr.String())
}

func TestSweepDryRunDeletesNothing(t *testing.T) {
	var stdout, stderr bytes.Buffer

	err := run(t.Context(), []string{"-dry-run"}, &stdout, &stderr, os.Getenv)

	require.NoError(t, err, "stderr: %s", stderr.String())
	out := stdout.String()
	assert.NotContains(t, out, "Deleting")
	assert.Equal(t, 10, strings.Count(out, "): would be deleted\n"))
	assert.Contains(t, out, "Summary: listed 21 (the project's expired keys), marked 20, expired 20, deleted 0 (dry run), failed 0.\n")
	assert.Contains(t, out, "On the fake now: 0 marked keys deleted, 20 marked expired keys left, 2 live leased keys untouched, 2 keys without the marker untouched (1 expired).\n")
	testenv.NoSecret(t, "stdout", out, secretLike.FindAllString(out, -1)...)
}

// seedAndSweep seeds srv as the program does, sweeps it and returns what
// sweep printed and returned.
func seedAndSweep(t *testing.T, srv *keystest.Server, dryRun bool) (string, lease.SweepResult, error) {
	t.Helper()
	var out bytes.Buffer
	endLive, err := seed(t.Context(), srv, &out)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, endLive()) })
	res, err := sweep(t.Context(), srv.Client(), dryRun, &out)
	return out.String(), res, err
}

func TestSweepNeverTouchesUnmarkedOrLiveKeys(t *testing.T) {
	srv := keystest.NewServer(t, keystest.WithoutListener())
	live := 0
	_, _, err := seedAndSweep(t, srv, false)
	require.NoError(t, err)

	for _, k := range srv.Keys() {
		_, markerErr := lease.ParseMarker(k.Key.Comment, k.Key.Tags)
		switch {
		case markerErr != nil: // the admin key and the two seeded keys without the marker
			assert.NotEqual(t, keystest.StatusDeleted, k.Status, "unmarked key %q", k.Key.Comment)
			assert.Zero(t, k.Deletes)
		case k.Status == keystest.StatusActive: // a live lease
			live++
		default:
			assert.Equal(t, keystest.StatusDeleted, k.Status, "expired marked key %s", k.Key.ID)
			assert.Equal(t, 1, k.Deletes)
		}
	}
	assert.Equal(t, seedLive, live, "live leased keys stay")
}

func TestSweepReportsFailedDeletions(t *testing.T) {
	srv := keystest.NewServer(t, keystest.WithoutListener())
	srv.Fail(keystest.OpDelete, keystest.Fault{Status: 503, Times: 2}) // two deletes fail once

	out, res, err := seedAndSweep(t, srv, false)

	require.Error(t, err)
	assert.EqualError(t, err, "2 of 20 deletions failed (see above); run again later")
	assert.Len(t, res.Failed, 2)
	assert.Equal(t, 18, res.Deleted)
	assert.Equal(t, 2, strings.Count(out, "): NOT deleted: keys: delete key: deepgram answered 503"), "every failure is named")
	assert.Equal(t, 10, strings.Count(out, "): deleted\n"))
	assert.Contains(t, out, "  ... and 8 more\n")
	assert.Contains(t, out, "deleted 18, failed 2.\n")

	// A second run deletes what is left.
	res, err = sweep(t.Context(), srv.Client(), false, &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, 2, res.Deleted)
}

func TestSweepRefusesArguments(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"-dry-run", "extra"}, &stdout, &stderr, os.Getenv)
	assert.ErrorContains(t, err, "unexpected arguments")
	assert.Empty(t, stdout.String())
}
