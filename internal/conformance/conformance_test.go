package conformance_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/internal/testaudio"
	"github.com/dglease/dglease/internal/testenv"
	"github.com/dglease/dglease/keys/keystest"
	"github.com/dglease/dglease/lease"
)

// sdkPackage is the installed SDK's package.json, present after npm ci.
const sdkPackage = "node_modules/@deepgram/sdk/package.json"

// nodeOrSkip returns the node binary, or skips (fails with DGLEASE_REQUIRE_TOOLS=1) when
// node or the installed SDK is missing.
func nodeOrSkip(t *testing.T) string {
	t.Helper()
	missing := func(what string) {
		t.Helper()
		testenv.Missing(t, what+": the official JavaScript SDK conformance test needs node and `npm ci` in internal/conformance (.ci/run does both)")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node is not on PATH")
	}
	raw, err := os.ReadFile(sdkPackage)
	if err != nil {
		missing(sdkPackage + " is absent")
	}
	var pkg struct{ Version string }
	require.NoError(t, json.Unmarshal(raw, &pkg))
	require.Equal(t, "5.13.0", pkg.Version, "installed @deepgram/sdk differs from the lockfile's: run npm ci")
	return node
}

// event is one line the script writes (see sdk.mjs).
type event struct {
	Event   string `json:"event"`
	Stream  string `json:"stream"`
	Message string `json:"message"`

	Projects []string `json:"projects"`
	Listed   []struct {
		APIKeyID string   `json:"api_key_id"`
		Scopes   []string `json:"scopes"`
		MemberID string   `json:"member_id"`
	} `json:"listed"`
	Got struct {
		APIKeyID string   `json:"api_key_id"`
		Scopes   []string `json:"scopes"`
		MemberID string   `json:"member_id"`
	} `json:"got"`
	GrantDefault  grant `json:"grant_default"`
	GrantFraction grant `json:"grant_fraction"`

	Messages []message `json:"messages"`
}

type grant struct {
	HasToken  bool    `json:"has_token"`
	ExpiresIn float64 `json:"expires_in"`
}

// message is what a user's code reads from one SDK message.
type message struct {
	Type        string   `json:"type"`
	IsFinal     *bool    `json:"is_final"`
	Transcript  string   `json:"transcript"`
	RequestID   string   `json:"request_id"`
	Timestamp   *float64 `json:"timestamp"`
	LastWordEnd *float64 `json:"last_word_end"`
}

// The official JavaScript SDK in Node, against keystest, with a key and a
// grant token leased through lease: its manage and auth calls read what the
// fake answers, and it streams with each credential, the key deleted once
// its socket is open.
func TestOfficialJavaScriptSDK(t *testing.T) {
	node := nodeOrSkip(t)
	srv := keystest.NewServer(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	keyLeases, err := lease.New(srv.Client())
	require.NoError(t, err)
	t.Cleanup(func() { _ = keyLeases.Close(context.Background()) })
	tokenLeases, err := lease.New(srv.Client(), lease.WithGrantTokens())
	require.NoError(t, err)
	t.Cleanup(func() { _ = tokenLeases.Close(context.Background()) })

	keyLease, err := keyLeases.Acquire(ctx, "node-key-user")
	require.NoError(t, err)
	defer keyLease.Release()
	tokenLease, err := tokenLeases.Acquire(ctx, "node-token-user")
	require.NoError(t, err)
	defer tokenLease.Release()
	require.Equal(t, "token", keyLease.Subprotocol()[0])
	require.Equal(t, "bearer", tokenLease.Subprotocol()[0])

	audioFile := filepath.Join(t.TempDir(), "audio.pcm")
	require.NoError(t, os.WriteFile(audioFile, testaudio.PCM(), 0o600))

	cmd := exec.CommandContext(ctx, node, "sdk.mjs")
	cmd.Env = append(os.Environ(), // without DEEPGRAM_*: see TestMain
		"DG_BASE_URL="+srv.URL,
		"DG_WS_URL="+strings.TrimSuffix(srv.ListenURL(), "/v1/listen"),
		"DG_PROJECT="+srv.ProjectID(),
		"DG_ADMIN_KEY="+srv.AdminKey(),
		"DG_LEASED_KEY="+keyLease.Secret(),
		"DG_LEASED_KEY_ID="+keyLease.KeyID(),
		"DG_LEASED_TOKEN="+tokenLease.Secret(),
		"DG_AUDIO="+audioFile,
	)
	var stderr testenv.Buffer // exec fills it from its own goroutine
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())

	events := map[string]event{} // by kind and stream: "manage", "stream key", ...
	lines := bufio.NewScanner(stdout)
	lines.Buffer(nil, 1<<20)
	for lines.Scan() {
		var e event
		require.NoError(t, json.Unmarshal(lines.Bytes(), &e), "script line %s", lines.Text())
		switch e.Event {
		case "error":
			t.Fatalf("sdk.mjs: %s\nstderr:\n%s", e.Message, stderr.String())
		case "open":
			if e.Stream == "key" {
				// As Deepgram advises: delete the key as soon as its socket
				// is open. The stream must go on.
				keyLease.Release()
				require.NoError(t, keyLeases.Flush(ctx))
				st, ok := srv.Key(keyLease.KeyID())
				require.True(t, ok)
				require.Equal(t, 1, st.Deletes, "the leased key is deleted before any audio is sent")
			}
			_, err := io.WriteString(stdin, "go\n")
			require.NoError(t, err)
		}
		events[strings.TrimSpace(e.Event+" "+e.Stream)] = e
	}
	require.NoError(t, lines.Err())
	require.NoError(t, cmd.Wait(), "stderr:\n%s", stderr.String())

	t.Run("manage and auth calls", func(t *testing.T) {
		m, ok := events["manage"]
		require.True(t, ok, "no manage report")
		assert.Equal(t, []string{srv.ProjectID()}, m.Projects)
		var listedIDs []string
		for _, k := range m.Listed {
			listedIDs = append(listedIDs, k.APIKeyID)
			assert.NotEmpty(t, k.MemberID)
		}
		assert.Contains(t, listedIDs, keyLease.KeyID())
		// keys.get reads item.member.api_key, the current reference's shape.
		assert.Equal(t, keyLease.KeyID(), m.Got.APIKeyID)
		assert.Equal(t, []string{"usage:write"}, m.Got.Scopes)
		assert.NotEmpty(t, m.Got.MemberID)
		assert.Equal(t, grant{HasToken: true, ExpiresIn: 30}, m.GrantDefault)
		assert.Equal(t, grant{HasToken: true, ExpiresIn: 30}, m.GrantFraction, "ttl_seconds 30.5: the fraction is dropped")
	})
	for _, name := range []string{"key", "token"} {
		t.Run("live stream with the leased "+name, func(t *testing.T) {
			s, ok := events["stream "+name]
			require.True(t, ok, "no report of the %s stream", name)
			requireStreamMessages(t, s.Messages)
		})
	}
	assert.Len(t, srv.Streams(), 2, "both streams were recorded")
}

// requireStreamMessages checks what a user's code reads from one stream of
// four audio frames asked for interim results, VAD events and utterance
// ends.
func requireStreamMessages(t *testing.T, msgs []message) {
	t.Helper()
	require.NotEmpty(t, msgs)
	var kinds, finals []string
	for _, m := range msgs {
		kind := m.Type
		if m.Type == "Results" {
			require.NotNil(t, m.IsFinal, "Results without is_final")
			if *m.IsFinal {
				kind = "final"
				finals = append(finals, m.Transcript)
			} else {
				kind = "interim"
				assert.NotEmpty(t, m.Transcript)
			}
			assert.NotEmpty(t, m.RequestID)
		}
		if m.Type == "SpeechStarted" {
			assert.NotNil(t, m.Timestamp)
		}
		if m.Type == "UtteranceEnd" {
			assert.NotNil(t, m.LastWordEnd)
		}
		kinds = append(kinds, kind)
	}
	perFrame := []string{"SpeechStarted", "interim", "final", "UtteranceEnd"}
	var want []string
	for range 4 {
		want = append(want, perFrame...)
	}
	want = append(want, "Metadata")
	assert.Equal(t, want, kinds)
	assert.Equal(t, []string{
		"hello from the fake deepgram",
		"the quick brown fox jumps over the lazy dog",
		"testing one two three",
		"hello from the fake deepgram",
	}, finals)
	assert.Equal(t, msgs[0+2].RequestID, msgs[len(msgs)-1].RequestID, "Metadata and Results share the request ID")
}
