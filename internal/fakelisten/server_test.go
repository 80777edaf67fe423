package fakelisten_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dvonthenen/websocket"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/internal/fakelisten"
)

// Credentials the test servers accept.
const (
	testKey = "0123456789abcdef0123456789abcdef01234567"
	testJWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0ZXN0In0.c2lnbmF0dXJl"
	// badKey is refused; it must never be echoed.
	badKey = "ffffeeeeddddccccbbbbaaaa9999888877776666"
)

// waitLimit bounds every wait for the fake over a real socket. It is a
// deadline, never a sleep.
const waitLimit = 10 * time.Second

// known is a fake Authenticate: it lets in "token testKey" (account
// "key") and "bearer testJWT" (account "jwt").
func known(scheme, secret string) (string, error) {
	switch scheme + " " + secret {
	case "token " + testKey:
		return "key", nil
	case "bearer " + testJWT:
		return "jwt", nil
	}
	// The text quotes the secret on purpose: the fake must not pass it on.
	return "", errors.New("unknown credential " + secret)
}

// authLog is known that records every call.
type authLog struct {
	mu    sync.Mutex
	calls []string // "scheme secret"
}

func (a *authLog) check(scheme, secret string) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, scheme+" "+secret)
	return known(scheme, secret)
}

func (a *authLog) Calls() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.calls...)
}

// fake is a test server running the handler over real sockets.
type fake struct {
	*httptest.Server
	// returned receives once each time a ServeHTTP call returns.
	returned chan struct{}
}

// newFake serves a handler that authenticates with auth (known, or an
// authLog's check to see the calls).
func newFake(t *testing.T, auth fakelisten.Authenticate, opts ...fakelisten.Option) *fake {
	t.Helper()
	f := &fake{returned: make(chan struct{}, 100)}
	h := fakelisten.Handler(auth, opts...)
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { f.returned <- struct{}{} }()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

// wsURL is the stream URL with query (which may be empty).
func (f *fake) wsURL(query string) string {
	u := "ws" + strings.TrimPrefix(f.URL, "http") + "/v1/listen"
	if query != "" {
		u += "?" + query
	}
	return u
}

// dial opens a stream with header and subprotocols and registers its close.
func (f *fake) dial(t *testing.T, header http.Header, subprotocols ...string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	d := websocket.Dialer{Subprotocols: subprotocols, HandshakeTimeout: waitLimit}
	conn, resp, err := d.Dial(f.wsURL("encoding=linear16&sample_rate=16000&channels=1&model=nova-2"), header)
	if conn != nil {
		t.Cleanup(func() { _ = conn.Close() })
	}
	return conn, resp, err
}

// open is dial with the test key in the Authorization header; it must work.
func (f *fake) open(t *testing.T) *websocket.Conn {
	t.Helper()
	conn, _, err := f.dial(t, http.Header{"Authorization": {"Token " + testKey}})
	require.NoError(t, err)
	return conn
}

// waitReturned fails unless a ServeHTTP call returns within waitLimit.
func (f *fake) waitReturned(t *testing.T) {
	t.Helper()
	select {
	case <-f.returned:
	case <-time.After(waitLimit):
		t.Fatal("the handler did not return after the connection ended")
	}
}

// message is the union of the fields the tests read from server messages.
type message struct {
	Type         string  `json:"type"`
	ChannelIndex []int   `json:"channel_index"`
	Start        float64 `json:"start"`
	Duration     float64 `json:"duration"`
	IsFinal      bool    `json:"is_final"`
	SpeechFinal  bool    `json:"speech_final"`
	FromFinalize bool    `json:"from_finalize"`
	Channel      struct {
		Alternatives []struct {
			Transcript string  `json:"transcript"`
			Confidence float64 `json:"confidence"`
			Words      []struct {
				Word  string  `json:"word"`
				Start float64 `json:"start"`
				End   float64 `json:"end"`
			} `json:"words"`
		} `json:"alternatives"`
	} `json:"channel"`
	Metadata struct {
		RequestID string `json:"request_id"`
		ModelUUID string `json:"model_uuid"`
		ModelInfo struct {
			Name string `json:"name"`
		} `json:"model_info"`
	} `json:"metadata"`

	// Metadata message fields.
	TransactionKey string                     `json:"transaction_key"`
	RequestID      string                     `json:"request_id"`
	Sha256         string                     `json:"sha256"`
	Created        string                     `json:"created"`
	Channels       int                        `json:"channels"`
	Models         []string                   `json:"models"`
	ModelInfo      map[string]json.RawMessage `json:"model_info"`
}

func (m message) transcript() string {
	if len(m.Channel.Alternatives) == 0 {
		return ""
	}
	return m.Channel.Alternatives[0].Transcript
}

// next reads one text message from conn.
func next(t *testing.T, conn *websocket.Conn) message {
	t.Helper()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(waitLimit)))
	kind, data, err := conn.ReadMessage()
	require.NoError(t, err)
	require.Equal(t, websocket.TextMessage, kind)
	var m message
	require.NoError(t, json.Unmarshal(data, &m), "message %s", data)
	return m
}

// closeCode is readClose within waitLimit.
func closeCode(t *testing.T, conn *websocket.Conn) (int, string) {
	t.Helper()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(waitLimit)))
	return readClose(conn)
}

func send(t *testing.T, conn *websocket.Conn, msgType string) {
	t.Helper()
	require.NoError(t, conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"`+msgType+`"}`)))
}
