package fakelisten_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/dvonthenen/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/internal/fakelisten"
	"github.com/dglease/dglease/internal/testenv"
)

func TestOpenWithCredential(t *testing.T) {
	tests := []struct {
		name         string
		header       http.Header
		subprotocols []string
		wantAuth     string // the call Authenticate must see
		wantProtocol string // the subprotocol the handshake must choose
	}{
		{name: "Authorization Token", header: http.Header{"Authorization": {"Token " + testKey}}, wantAuth: "token " + testKey},
		{name: "Authorization token, as the SDK sends it", header: http.Header{"Authorization": {"token " + testKey}}, wantAuth: "token " + testKey},
		{name: "Authorization Bearer", header: http.Header{"Authorization": {"Bearer " + testJWT}}, wantAuth: "bearer " + testJWT},
		{name: "subprotocols token, key", subprotocols: []string{"token", testKey}, wantAuth: "token " + testKey, wantProtocol: "token"},
		{name: "subprotocols bearer, jwt", subprotocols: []string{"bearer", testJWT}, wantAuth: "bearer " + testJWT, wantProtocol: "bearer"},
		// Deepgram's JavaScript SDK 5.x in a browser: a session ID follows the credential.
		{
			name:         "subprotocols token, key, session id (browser SDK)",
			subprotocols: []string{"token", testKey, "x-deepgram-session-id", sessionID},
			wantAuth:     "token " + testKey,
			wantProtocol: "token",
		},
		{
			name:         "subprotocols bearer, jwt, session id (browser SDK)",
			subprotocols: []string{"bearer", testJWT, "x-deepgram-session-id", sessionID},
			wantAuth:     "bearer " + testJWT,
			wantProtocol: "bearer",
		},
		{
			name:         "header wins over subprotocols",
			header:       http.Header{"Authorization": {"Token " + testKey}},
			subprotocols: []string{"bearer", badKey},
			wantAuth:     "token " + testKey,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			auth := &authLog{}
			f := newFake(t, auth.check)
			conn, resp, err := f.dial(t, tt.header, tt.subprotocols...)
			require.NoError(t, err)
			assert.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
			assert.NotEmpty(t, resp.Header.Get("dg-request-id"))
			assert.Equal(t, tt.wantProtocol, conn.Subprotocol())
			assert.Equal(t, []string{tt.wantAuth}, auth.Calls())

			require.NoError(t, conn.Close())
			f.waitReturned(t)
		})
	}
}

func TestOpenRefused(t *testing.T) {
	tests := []struct {
		name         string
		header       http.Header
		subprotocols []string
		wantAuthCall bool
	}{
		{name: "no credential"},
		{name: "unknown key in header", header: http.Header{"Authorization": {"Token " + badKey}}, wantAuthCall: true},
		{name: "unknown key in subprotocols", subprotocols: []string{"token", badKey}, wantAuthCall: true},
		{name: "key sent as bearer", header: http.Header{"Authorization": {"Bearer " + testKey}}, wantAuthCall: true},
		{name: "unknown scheme", header: http.Header{"Authorization": {"Basic " + badKey}}},
		{name: "scheme without secret", header: http.Header{"Authorization": {"Token"}}},
		{name: "subprotocol scheme only", subprotocols: []string{"token"}},
		{name: "subprotocol secret only", subprotocols: []string{badKey}},
		{name: "session id before the credential", subprotocols: []string{"x-deepgram-session-id", sessionID, "token", testKey}},
		{name: "unknown key, session id after it", subprotocols: []string{"token", badKey, "x-deepgram-session-id", sessionID}, wantAuthCall: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			auth := &authLog{}
			f := newFake(t, auth.check)
			conn, resp, err := f.dial(t, tt.header, tt.subprotocols...)
			require.ErrorIs(t, err, websocket.ErrBadHandshake)
			require.Nil(t, conn)
			assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
			assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))

			raw, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			var body struct {
				ErrCode   string `json:"err_code"`
				ErrMsg    string `json:"err_msg"`
				RequestID string `json:"request_id"`
			}
			require.NoError(t, json.Unmarshal(raw, &body), "body %s", raw)
			assert.Equal(t, "INVALID_AUTH", body.ErrCode)
			assert.NotEmpty(t, body.ErrMsg)
			assert.NotEmpty(t, body.RequestID)
			assert.Equal(t, body.RequestID, resp.Header.Get("dg-request-id"))
			assert.Equal(t, body.ErrMsg, resp.Header.Get("dg-error"))

			testenv.NoSecret(t, "body", string(raw), badKey, testKey)
			for name, values := range resp.Header {
				testenv.NoSecret(t, "header "+name, strings.Join(values, ", "), badKey, testKey)
			}
			assert.Equal(t, tt.wantAuthCall, len(auth.Calls()) == 1, "auth calls %d", len(auth.Calls()))
		})
	}
}

func TestNotAWebSocket(t *testing.T) {
	f := newFake(t, known)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, f.URL+"/v1/listen", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Token "+testKey)
	resp, err := f.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
}

func TestHandlerPanicsOnBadSetup(t *testing.T) {
	assert.PanicsWithValue(t, "fakelisten: Handler needs a non-nil Authenticate", func() {
		fakelisten.Handler(nil)
	})
	for _, opt := range []fakelisten.Option{
		fakelisten.WithIdleTimeout(0),
		fakelisten.WithTranscript(),
		fakelisten.WithTranscript("ok", "  "),
		fakelisten.WithRecorder(nil),
		fakelisten.WithClock(nil),
	} {
		assert.Panics(t, func() { fakelisten.Handler(allowAll, opt) })
	}
}

// sessionID is the shape of the session ID Deepgram's JavaScript SDK adds
// to its subprotocols.
const sessionID = "3f1e7c2a-9b4d-4e8f-a1c6-5d2b7e9f0a13"

func allowAll(string, string) (string, error) { return "anyone", nil }
