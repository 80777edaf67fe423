package fakelisten_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
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

// recorder is an SDK LiveMessageCallback that passes what it gets to
// channels. The SDK calls it from its own goroutine.
type recorder struct {
	results  chan *msginterfaces.MessageResponse
	metadata chan *msginterfaces.MetadataResponse
	errs     chan *msginterfaces.ErrorResponse
	// speechStarted and utteranceEnd receive once each per message.
	speechStarted, utteranceEnd chan struct{}
}

func newRecorder() *recorder {
	return &recorder{
		results:  make(chan *msginterfaces.MessageResponse, 100),
		metadata: make(chan *msginterfaces.MetadataResponse, 10),
		errs:     make(chan *msginterfaces.ErrorResponse, 10),

		speechStarted: make(chan struct{}, 100),
		utteranceEnd:  make(chan struct{}, 100),
	}
}

func (r *recorder) Open(*msginterfaces.OpenResponse) error { return nil }
func (r *recorder) Message(m *msginterfaces.MessageResponse) error {
	select {
	case r.results <- m:
	default:
	}
	return nil
}
func (r *recorder) Metadata(m *msginterfaces.MetadataResponse) error {
	select {
	case r.metadata <- m:
	default:
	}
	return nil
}
func (r *recorder) SpeechStarted(*msginterfaces.SpeechStartedResponse) error {
	select {
	case r.speechStarted <- struct{}{}:
	default:
	}
	return nil
}
func (r *recorder) UtteranceEnd(*msginterfaces.UtteranceEndResponse) error {
	select {
	case r.utteranceEnd <- struct{}{}:
	default:
	}
	return nil
}
func (r *recorder) Close(*msginterfaces.CloseResponse) error { return nil }
func (r *recorder) Error(e *msginterfaces.ErrorResponse) error {
	select {
	case r.errs <- e:
	default:
	}
	return nil
}
func (r *recorder) UnhandledEvent([]byte) error { return nil }

func TestSDKLiveClientStreams(t *testing.T) {
	tests := []struct {
		name     string
		options  func(host string) *interfaces.ClientOptions
		wantAuth string
	}{
		{
			name: "API key",
			options: func(host string) *interfaces.ClientOptions {
				return &interfaces.ClientOptions{Host: host, APIKey: testKey}
			},
			wantAuth: "token " + testKey,
		},
		{
			name: "grant token",
			options: func(host string) *interfaces.ClientOptions {
				return &interfaces.ClientOptions{Host: host, AccessToken: testJWT}
			},
			wantAuth: "bearer " + testJWT,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			auth := &authLog{}
			f := newFake(t, auth.check)
			rec := newRecorder()
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()

			host := "ws://" + f.Listener.Addr().String() // the live client needs ws://
			client, err := listen.NewWSUsingCallback(ctx, "", tt.options(host), &interfaces.LiveTranscriptionOptions{
				Model:      "nova-2",
				Encoding:   testaudio.Encoding,
				SampleRate: testaudio.SampleRate,
				Channels:   testaudio.Channels,
			}, rec)
			require.NoError(t, err)
			require.NotNil(t, client)
			require.True(t, client.ConnectWithCancel(ctx, cancel, 1), "connect")

			// Stream ends with io.EOF once the reader is drained.
			err = client.Stream(bytes.NewReader(testaudio.PCM()))
			require.ErrorIs(t, err, io.EOF)

			select {
			case m := <-rec.results:
				require.NotEmpty(t, m.Channel.Alternatives)
				assert.Equal(t, "hello from the fake deepgram", m.Channel.Alternatives[0].Transcript)
				assert.True(t, m.IsFinal)
				assert.Equal(t, "nova-2", m.Metadata.ModelInfo.Name)
			case e := <-rec.errs:
				t.Fatalf("SDK error before any transcript: %+v", e)
			case <-time.After(waitLimit):
				t.Fatal("no transcript reached the SDK callback")
			}

			client.Stop()
			f.waitReturned(t)
			assert.Equal(t, []string{tt.wantAuth}, auth.Calls())
		})
	}
}

func TestSDKLiveClientRefused(t *testing.T) {
	f := newFake(t, known)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	host := "ws://" + f.Listener.Addr().String()
	client, err := listen.NewWSUsingCallback(ctx, "", &interfaces.ClientOptions{Host: host, APIKey: badKey},
		&interfaces.LiveTranscriptionOptions{Model: "nova-2"}, newRecorder())
	require.NoError(t, err)
	assert.False(t, client.ConnectWithCancel(ctx, cancel, 1), "a refused key must not connect")
	f.waitReturned(t)
}

// Every field the fake sends has a home in the SDK's types.
func TestMessagesDecodeIntoSDKTypes(t *testing.T) {
	f := newFake(t, known)
	conn := f.open(t)
	strict := func(data []byte, v any) {
		t.Helper()
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		require.NoError(t, dec.Decode(v), "message %s", data)
	}
	read := func() []byte {
		t.Helper()
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(waitLimit)))
		_, data, err := conn.ReadMessage()
		require.NoError(t, err)
		return data
	}

	require.NoError(t, conn.WriteMessage(websocket.BinaryMessage, testaudio.PCM()[:3200]))
	var res msginterfaces.MessageResponse
	strict(read(), &res)
	assert.Equal(t, "Results", res.Type)
	assert.Equal(t, "hello from the fake deepgram", res.Channel.Alternatives[0].Transcript)
	assert.Len(t, res.Channel.Alternatives[0].Words, 5)
	assert.InDelta(t, 0.1, res.Duration, 1e-9)

	send(t, conn, "Finalize")
	var fin msginterfaces.MessageResponse
	strict(read(), &fin)
	assert.True(t, fin.FromFinalize)

	send(t, conn, "CloseStream")
	var md msginterfaces.MetadataResponse
	strict(read(), &md)
	assert.Equal(t, "Metadata", md.Type)
	assert.Equal(t, res.Metadata.RequestID, md.RequestID)
	assert.Equal(t, []string{res.Metadata.ModelUUID}, md.Models)
	assert.Equal(t, res.Metadata.ModelInfo, md.ModelInfo[res.Metadata.ModelUUID])
}
