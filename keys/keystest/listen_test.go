package keystest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	msginterfaces "github.com/deepgram/deepgram-go-sdk/v3/pkg/api/listen/v1/websocket/interfaces"
	interfaces "github.com/deepgram/deepgram-go-sdk/v3/pkg/client/interfaces/v1"
	"github.com/deepgram/deepgram-go-sdk/v3/pkg/client/listen"
	"github.com/dvonthenen/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/internal/testaudio"
	"github.com/dglease/dglease/internal/testenv"
	"github.com/dglease/dglease/keys"
	"github.com/dglease/dglease/keys/keystest"
)

func listenURL(srv *keystest.Server) string {
	return srv.ListenURL() + "?model=nova-3&encoding=linear16&sample_rate=16000"
}

// dial opens /v1/listen the way a browser does: the credential in the
// Sec-WebSocket-Protocol list.
func dial(t *testing.T, srv *keystest.Server, scheme, secret string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{scheme, secret}, HandshakeTimeout: 10 * time.Second}
	conn, resp, err := d.Dial(listenURL(srv), nil)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if conn != nil {
		t.Cleanup(func() { conn.Close() })
	}
	return conn, resp, err
}

// transcript sends audio and returns the transcript of the answer.
func transcript(t *testing.T, conn *websocket.Conn) string {
	t.Helper()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	require.NoError(t, conn.WriteMessage(websocket.BinaryMessage, testaudio.PCM()[:3200]))
	var msg struct {
		Type    string `json:"type"`
		Channel struct {
			Alternatives []struct {
				Transcript string `json:"transcript"`
			} `json:"alternatives"`
		} `json:"channel"`
	}
	_, data, err := conn.ReadMessage()
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &msg))
	require.Equal(t, "Results", msg.Type)
	require.NotEmpty(t, msg.Channel.Alternatives)
	return msg.Channel.Alternatives[0].Transcript
}

// requireRefused dials with scheme and secret and requires a 401 whose
// headers do not hold the secret.
func requireRefused(t *testing.T, srv *keystest.Server, scheme, secret, why string) {
	t.Helper()
	_, resp, err := dial(t, srv, scheme, secret)
	require.Error(t, err, why)
	require.NotNil(t, resp, why)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, why)
	for name, values := range resp.Header {
		testenv.NoSecret(t, "header "+name, strings.Join(values, ", "), secret)
	}
}

func TestListenStreamOutlivesItsKey(t *testing.T) {
	srv := keystest.NewServer(t)
	k := usageKey(t, srv, time.Minute)

	conn, resp, err := dial(t, srv, "token", k.Secret)
	require.NoError(t, err)
	assert.Equal(t, "token", resp.Header.Get("Sec-WebSocket-Protocol"), "the server picks the scheme, never the secret")
	assert.NotEmpty(t, transcript(t, conn))

	require.NoError(t, srv.Client().Delete(context.Background(), k.ID))
	assert.NotEmpty(t, transcript(t, conn), "an open stream outlives its key")

	requireRefused(t, srv, "token", k.Secret, "a deleted key opens no new stream")
}

func TestListenRefusesUnusableCredentials(t *testing.T) {
	srv := keystest.NewServer(t)
	expired := usageKey(t, srv, time.Second)
	unscoped, err := srv.Client().Create(context.Background(), keys.Spec{Comment: "no usage", Scopes: []string{"keys:read"}, TTL: time.Hour})
	require.NoError(t, err)
	srv.Advance(time.Minute)
	tests := []struct{ name, scheme, secret string }{
		{"expired key", "token", expired.Secret},
		{"key without usage:write", "token", unscoped.Secret},
		{"unknown key", "token", strings.Repeat("0", 40)},
		{"forged JWT", "bearer", "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjk5OTk5OTk5OTl9.c2ln"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			requireRefused(t, srv, tt.scheme, tt.secret, tt.name)
		})
	}
}

func TestListenWithGrantToken(t *testing.T) {
	srv := keystest.NewServer(t)
	tok, err := srv.Client().Grant(context.Background(), 30*time.Second)
	require.NoError(t, err)
	conn, _, err := dial(t, srv, "bearer", tok.Secret)
	require.NoError(t, err)
	assert.NotEmpty(t, transcript(t, conn))

	srv.Advance(time.Minute)
	requireRefused(t, srv, "bearer", tok.Secret, "an expired grant token opens no stream")
}

func TestCloseEndsOpenStreams(t *testing.T) {
	srv := keystest.NewServer(t)
	k := usageKey(t, srv, time.Minute)
	conn, _, err := dial(t, srv, "token", k.Secret)
	require.NoError(t, err)
	closed := make(chan error, 1)
	go func() {
		for {
			if _, _, err := conn.ReadMessage(); err != nil {
				closed <- err
				return
			}
		}
	}()
	srv.Close()
	err = <-closed
	assert.True(t, websocket.IsCloseError(err, websocket.CloseGoingAway), "got %v", err)
}

// sdkRecorder collects what the SDK's live client delivers.
type sdkRecorder struct {
	results chan *msginterfaces.MessageResponse
}

func (r *sdkRecorder) Open(*msginterfaces.OpenResponse) error { return nil }
func (r *sdkRecorder) Message(m *msginterfaces.MessageResponse) error {
	select {
	case r.results <- m:
	default:
	}
	return nil
}
func (r *sdkRecorder) Metadata(*msginterfaces.MetadataResponse) error           { return nil }
func (r *sdkRecorder) SpeechStarted(*msginterfaces.SpeechStartedResponse) error { return nil }
func (r *sdkRecorder) UtteranceEnd(*msginterfaces.UtteranceEndResponse) error   { return nil }
func (r *sdkRecorder) Close(*msginterfaces.CloseResponse) error                 { return nil }
func (r *sdkRecorder) Error(*msginterfaces.ErrorResponse) error                 { return nil }
func (r *sdkRecorder) UnhandledEvent([]byte) error                              { return nil }

// The official SDK's live client streams against the fake with a key the
// fake issued.
func TestOfficialSDKLiveClientStreams(t *testing.T) {
	srv := keystest.NewServer(t)
	k := usageKey(t, srv, time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := &sdkRecorder{results: make(chan *msginterfaces.MessageResponse, 100)}
	host := strings.TrimSuffix(srv.ListenURL(), "/v1/listen")
	client, err := listen.NewWSUsingCallback(ctx, "", &interfaces.ClientOptions{Host: host, APIKey: k.Secret},
		&interfaces.LiveTranscriptionOptions{Model: "nova-3", Encoding: testaudio.Encoding, SampleRate: testaudio.SampleRate, Channels: testaudio.Channels}, rec)
	require.NoError(t, err)
	require.True(t, client.ConnectWithCancel(ctx, cancel, 1), "connect")
	require.NoError(t, srv.Client().Delete(context.Background(), k.ID), "delete the key once the stream is open")
	require.ErrorIs(t, client.Stream(bytes.NewReader(testaudio.PCM())), io.EOF)
	select {
	case m := <-rec.results:
		require.NotEmpty(t, m.Channel.Alternatives)
		assert.NotEmpty(t, m.Channel.Alternatives[0].Transcript)
	case <-time.After(30 * time.Second):
		t.Fatal("no transcript reached the SDK callback")
	}
	client.Stop()
}

// Deepgram's JavaScript SDK 5.x in a browser offers four subprotocols: the
// credential, then "x-deepgram-session-id" and a UUID. The fake reads the
// first two and answers with the scheme.
func TestListenTakesTheBrowserSDKSubprotocols(t *testing.T) {
	srv := keystest.NewServer(t)
	k := usageKey(t, srv, time.Minute)
	tok, err := srv.Client().Grant(context.Background(), 30*time.Second)
	require.NoError(t, err)
	for _, cred := range []struct{ scheme, secret string }{{"token", k.Secret}, {"bearer", tok.Secret}} {
		t.Run(cred.scheme, func(t *testing.T) {
			d := websocket.Dialer{
				Subprotocols:     []string{cred.scheme, cred.secret, "x-deepgram-session-id", "3f1e7c2a-9b4d-4e8f-a1c6-5d2b7e9f0a13"},
				HandshakeTimeout: 10 * time.Second,
			}
			conn, resp, err := d.Dial(listenURL(srv), nil)
			require.NoError(t, err)
			t.Cleanup(func() { conn.Close() })
			assert.Equal(t, cred.scheme, resp.Header.Get("Sec-WebSocket-Protocol"))
			assert.NotEmpty(t, transcript(t, conn))
		})
	}
}
