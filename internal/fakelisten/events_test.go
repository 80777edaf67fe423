package fakelisten_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	msginterfaces "github.com/deepgram/deepgram-go-sdk/v3/pkg/api/listen/v1/websocket/interfaces"
	"github.com/deepgram/deepgram-go-sdk/v3/pkg/client/interfaces"
	"github.com/deepgram/deepgram-go-sdk/v3/pkg/client/listen"
	"github.com/dvonthenen/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/internal/testaudio"
)

// The optional messages come when the query asks for them, and only then,
// in Deepgram's order around each final Results.
func TestOptionalMessagesWhenAsked(t *testing.T) {
	const (
		interim = "Results(interim)"
		final   = "Results(final)"
	)
	tests := []struct {
		query string
		want  []string // per audio frame
	}{
		{query: "", want: []string{final}},
		{query: "interim_results=true", want: []string{interim, final}},
		{query: "interim_results=TRUE", want: []string{interim, final}},
		{query: "interim_results=false&vad_events=false", want: []string{final}},
		{query: "vad_events=true", want: []string{"SpeechStarted", final}},
		{query: "utterance_end_ms=1000&interim_results=true", want: []string{interim, final, "UtteranceEnd"}},
		// Deepgram documents that UtteranceEnd needs interim results.
		{query: "utterance_end_ms=1000", want: []string{final}},
		{query: "utterance_end_ms=soon&interim_results=true", want: []string{interim, final}},
		{
			query: "interim_results=true&vad_events=true&utterance_end_ms=1000",
			want:  []string{"SpeechStarted", interim, final, "UtteranceEnd"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			f := newFake(t, known)
			conn := f.openQuery(t, tt.query)
			audio := testaudio.PCM()
			require.NoError(t, conn.WriteMessage(websocket.BinaryMessage, audio[:16000]))
			require.NoError(t, conn.WriteMessage(websocket.BinaryMessage, audio[16000:32000]))
			send(t, conn, "CloseStream")

			var got []string
			for {
				require.NoError(t, conn.SetReadDeadline(time.Now().Add(waitLimit)))
				_, data, err := conn.ReadMessage()
				require.NoError(t, err)
				var m struct {
					Type    string `json:"type"`
					IsFinal bool   `json:"is_final"`
				}
				require.NoError(t, json.Unmarshal(data, &m), "message %s", data)
				if m.Type == "Metadata" {
					break
				}
				kind := m.Type
				if m.Type == "Results" {
					kind = map[bool]string{true: final, false: interim}[m.IsFinal]
				}
				got = append(got, kind)
			}
			want := append(append([]string(nil), tt.want...), tt.want...) // two frames
			assert.Equal(t, want, got)
			code, _ := closeCode(t, conn)
			assert.Equal(t, websocket.CloseNormalClosure, code)
			f.waitReturned(t)
		})
	}
}

// Every field of the optional messages has a home in the Go SDK's types,
// and their times follow from the audio: SpeechStarted at the frame's
// start, the interim result over the same audio with the first half of the
// words, UtteranceEnd at the last word's end.
func TestOptionalMessagesDecodeIntoSDKTypes(t *testing.T) {
	f := newFake(t, known)
	conn := f.openQuery(t, "interim_results=true&vad_events=true&utterance_end_ms=1000")
	strict := func(v any) {
		t.Helper()
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(waitLimit)))
		_, data, err := conn.ReadMessage()
		require.NoError(t, err)
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		require.NoError(t, dec.Decode(v), "message %s", data)
	}
	audio := testaudio.PCM()
	frames := [][]byte{audio[:3200], audio[3200:9600]} // 0.1 s, then 0.2 s
	wantFinal := []string{"hello from the fake deepgram", "the quick brown fox jumps over the lazy dog"}
	wantInterim := []string{"hello from the", "the quick brown fox jumps"}
	starts := []float64{0, 0.1}
	ends := []float64{0.1, 0.3}
	for i, frame := range frames {
		require.NoError(t, conn.WriteMessage(websocket.BinaryMessage, frame))

		var ss msginterfaces.SpeechStartedResponse
		strict(&ss)
		assert.Equal(t, "SpeechStarted", ss.Type)
		assert.Equal(t, []int{0, 1}, ss.Channel)
		assert.InDelta(t, starts[i], ss.Timestamp, 1e-9)

		var in msginterfaces.MessageResponse
		strict(&in)
		assert.Equal(t, "Results", in.Type)
		assert.False(t, in.IsFinal)
		assert.False(t, in.SpeechFinal)
		assert.InDelta(t, starts[i], in.Start, 1e-9)
		assert.InDelta(t, ends[i]-starts[i], in.Duration, 1e-9)
		assert.Equal(t, wantInterim[i], in.Channel.Alternatives[0].Transcript)

		var fin msginterfaces.MessageResponse
		strict(&fin)
		assert.True(t, fin.IsFinal)
		assert.True(t, fin.SpeechFinal)
		assert.Equal(t, wantFinal[i], fin.Channel.Alternatives[0].Transcript)
		words := fin.Channel.Alternatives[0].Words
		assert.Equal(t, in.Channel.Alternatives[0].Words, words[:len(in.Channel.Alternatives[0].Words)], "interim words are the final's first words")

		var ue msginterfaces.UtteranceEndResponse
		strict(&ue)
		assert.Equal(t, "UtteranceEnd", ue.Type)
		assert.Equal(t, []int{0, 1}, ue.Channel)
		assert.InDelta(t, ends[i], ue.LastWordEnd, 1e-9)
		assert.InDelta(t, words[len(words)-1].End, ue.LastWordEnd, 1e-9)
	}
}

// The Go SDK's live client hands each optional message to its own
// callback.
func TestSDKLiveClientGetsOptionalMessages(t *testing.T) {
	f := newFake(t, known)
	rec := newRecorder()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	host := "ws://" + f.Listener.Addr().String()
	client, err := listen.NewWSUsingCallback(ctx, "", &interfaces.ClientOptions{Host: host, APIKey: testKey}, &interfaces.LiveTranscriptionOptions{
		Model:          "nova-2",
		Encoding:       testaudio.Encoding,
		SampleRate:     testaudio.SampleRate,
		Channels:       testaudio.Channels,
		InterimResults: true,
		VadEvents:      true,
		UtteranceEndMs: "1000",
	}, rec)
	require.NoError(t, err)
	require.True(t, client.ConnectWithCancel(ctx, cancel, 1), "connect")
	require.ErrorIs(t, client.Stream(bytes.NewReader(testaudio.PCM())), io.EOF)

	within := func(what string, c <-chan struct{}) {
		t.Helper()
		select {
		case <-c:
		case e := <-rec.errs:
			t.Fatalf("SDK error before %s: %+v", what, e)
		case <-time.After(waitLimit):
			t.Fatalf("no %s reached the SDK callback", what)
		}
	}
	within("SpeechStarted", rec.speechStarted)
	within("UtteranceEnd", rec.utteranceEnd)
	var sawInterim bool
	for !sawInterim {
		select {
		case m := <-rec.results:
			sawInterim = !m.IsFinal
		case <-time.After(waitLimit):
			t.Fatal("no interim Results reached the SDK callback")
		}
	}
	client.Stop()
	f.waitReturned(t)
}

// openQuery opens a stream with the test key and the usual raw-audio
// parameters plus query.
func (f *fake) openQuery(t *testing.T, query string) *websocket.Conn {
	t.Helper()
	q := "encoding=linear16&sample_rate=16000&channels=1&model=nova-2"
	if query != "" {
		q += "&" + query
	}
	d := websocket.Dialer{HandshakeTimeout: waitLimit}
	conn, _, err := d.Dial(f.wsURL(q), http.Header{"Authorization": {"Token " + testKey}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}
