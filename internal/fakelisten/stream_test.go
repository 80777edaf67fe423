package fakelisten_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dvonthenen/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/internal/fakelisten"
	"github.com/dglease/dglease/internal/testaudio"
)

func TestAudioIsTranscribedThenCloseStreamEndsIt(t *testing.T) {
	f := newFake(t, known)
	conn := f.open(t)
	audio := testaudio.PCM()
	frames := [][]byte{audio[:32000], audio[32000:48000], audio[48000:]}

	var starts, durations []float64
	var transcripts []string
	requestIDs := map[string]bool{}
	for _, frame := range frames {
		require.NoError(t, conn.WriteMessage(websocket.BinaryMessage, frame))
		m := next(t, conn)
		require.Equal(t, "Results", m.Type)
		assert.True(t, m.IsFinal)
		assert.True(t, m.SpeechFinal)
		assert.False(t, m.FromFinalize)
		assert.Equal(t, []int{0, 1}, m.ChannelIndex)
		assert.Equal(t, "nova-2", m.Metadata.ModelInfo.Name)
		assert.NotEmpty(t, m.Metadata.ModelUUID)
		require.Len(t, m.Channel.Alternatives, 1)
		alt := m.Channel.Alternatives[0]
		assert.NotEmpty(t, alt.Words)
		assert.InDelta(t, m.Start, alt.Words[0].Start, 1e-9)
		assert.InDelta(t, m.Start+m.Duration, alt.Words[len(alt.Words)-1].End, 1e-9)
		starts = append(starts, m.Start)
		durations = append(durations, m.Duration)
		transcripts = append(transcripts, m.transcript())
		requestIDs[m.Metadata.RequestID] = true
	}
	assert.Equal(t, []string{
		"hello from the fake deepgram",
		"the quick brown fox jumps over the lazy dog",
		"testing one two three",
	}, transcripts)
	assert.InDeltaSlice(t, []float64{0, 1, 1.5}, starts, 1e-9)
	assert.InDeltaSlice(t, []float64{1, 0.5, 0.5}, durations, 1e-9)
	require.Len(t, requestIDs, 1)

	send(t, conn, "CloseStream")
	md := next(t, conn)
	assert.Equal(t, "Metadata", md.Type)
	assert.Equal(t, "deprecated", md.TransactionKey)
	assert.Contains(t, requestIDs, md.RequestID)
	sum := sha256.Sum256(audio)
	assert.Equal(t, hex.EncodeToString(sum[:]), md.Sha256)
	assert.InDelta(t, 2.0, md.Duration, 1e-9)
	assert.Equal(t, 1, md.Channels)
	require.Len(t, md.Models, 1)
	assert.Contains(t, md.ModelInfo, md.Models[0])
	_, err := time.Parse(time.RFC3339Nano, md.Created)
	assert.NoError(t, err)

	code, _ := closeCode(t, conn)
	assert.Equal(t, websocket.CloseNormalClosure, code)
	f.waitReturned(t)
}

func TestTranscriptOption(t *testing.T) {
	f := newFake(t, known, fakelisten.WithTranscript("alpha  beta", "gamma"))
	conn := f.open(t)
	var got []string
	for range 3 {
		require.NoError(t, conn.WriteMessage(websocket.BinaryMessage, make([]byte, 320)))
		got = append(got, next(t, conn).transcript())
	}
	assert.Equal(t, []string{"alpha beta", "gamma", "alpha beta"}, got)
}

func TestFinalizeAnswersFromFinalize(t *testing.T) {
	f := newFake(t, known)
	conn := f.open(t)
	require.NoError(t, conn.WriteMessage(websocket.BinaryMessage, make([]byte, 3200)))
	require.Equal(t, "Results", next(t, conn).Type)

	send(t, conn, "Finalize")
	m := next(t, conn)
	assert.Equal(t, "Results", m.Type)
	assert.True(t, m.FromFinalize)
	assert.True(t, m.IsFinal)
	assert.InDelta(t, 0.1, m.Start, 1e-9)
	assert.Zero(t, m.Duration)
	assert.Empty(t, m.transcript())
}

func TestEmptyBinaryFrameIsIgnored(t *testing.T) {
	f := newFake(t, known)
	conn := f.open(t)
	require.NoError(t, conn.WriteMessage(websocket.BinaryMessage, nil))
	send(t, conn, "CloseStream")
	m := next(t, conn)
	assert.Equal(t, "Metadata", m.Type, "no Results for an empty frame")
	assert.Zero(t, m.Duration)
}

func TestUnknownTextMessageClosesWith1008(t *testing.T) {
	for _, msg := range []string{`{"type":"Flush"}`, `not json`} {
		t.Run(msg, func(t *testing.T) {
			f := newFake(t, known)
			conn := f.open(t)
			require.NoError(t, conn.WriteMessage(websocket.TextMessage, []byte(msg)))
			code, _ := closeCode(t, conn)
			assert.Equal(t, websocket.ClosePolicyViolation, code)
			f.waitReturned(t)
		})
	}
}

func TestClientCloseEndsHandler(t *testing.T) {
	f := newFake(t, known)
	conn := f.open(t)
	require.NoError(t, conn.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(waitLimit)))
	code, _ := closeCode(t, conn) // the server echoes the close
	assert.Equal(t, websocket.CloseNormalClosure, code)
	f.waitReturned(t)
}

func TestDroppedConnectionEndsHandler(t *testing.T) {
	f := newFake(t, known)
	conn := f.open(t)
	require.NoError(t, conn.NetConn().Close())
	f.waitReturned(t)
}

// Credentials are checked once, at open: a stream outlives its key.
func TestStreamOutlivesRevokedKey(t *testing.T) {
	var revoked atomic.Bool
	f := newFake(t, func(scheme, secret string) (string, error) {
		if revoked.Load() {
			return "", errors.New("refused")
		}
		return known(scheme, secret)
	})
	conn := f.open(t)

	revoked.Store(true) // as if the key were deleted or expired

	require.NoError(t, conn.WriteMessage(websocket.BinaryMessage, make([]byte, 3200)))
	assert.Equal(t, "hello from the fake deepgram", next(t, conn).transcript())

	_, resp, err := f.dial(t, http.Header{"Authorization": {"Token " + testKey}})
	require.ErrorIs(t, err, websocket.ErrBadHandshake)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "a new stream is refused")
	f.waitReturned(t) // the refused one

	send(t, conn, "CloseStream")
	assert.Equal(t, "Metadata", next(t, conn).Type)
	code, _ := closeCode(t, conn)
	assert.Equal(t, websocket.CloseNormalClosure, code)
	f.waitReturned(t)
}
