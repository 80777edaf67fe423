package testaudio

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/dvonthenen/websocket"
)

// frameBytes is one frame of [PCM]'s format (linear16: 2 bytes a
// sample): 100 ms.
const frameBytes = SampleRate * Channels * 2 / 10

// streamWait bounds each wait of [Stream] on the server: a safety net for
// a broken fake, never a sleep.
const streamWait = 10 * time.Second

// Stream streams audio, in [PCM]'s format, to listenURL (a ws:// or wss://
// /v1/listen URL without query) as a browser does: the credential in the
// WebSocket subprotocol list (["token", key] or ["bearer", jwt]) and the
// format in the query, with any extra tag parameters. It sends 100 ms
// frames, reads the Results message of each, then sends CloseStream and
// reads the Metadata message, by which time Deepgram's fakes have recorded
// the stream, and the close. It returns the Metadata's request ID. Errors
// never quote the credential.
func Stream(listenURL string, subprotocol []string, audio []byte, tags ...string) (requestID string, err error) {
	q := url.Values{
		"encoding":    {Encoding},
		"sample_rate": {strconv.Itoa(SampleRate)},
		"channels":    {strconv.Itoa(Channels)},
	}
	if len(tags) > 0 {
		q["tag"] = tags
	}
	d := websocket.Dialer{Subprotocols: subprotocol, HandshakeTimeout: streamWait}
	conn, resp, err := d.Dial(listenURL+"?"+q.Encode(), nil)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		return "", fmt.Errorf("testaudio: open %s: status %d: %w", listenURL, status, err)
	}
	defer conn.Close()
	read := func(want string) (string, error) {
		if err := conn.SetReadDeadline(time.Now().Add(streamWait)); err != nil {
			return "", err
		}
		_, data, err := conn.ReadMessage()
		if err != nil {
			return "", fmt.Errorf("testaudio: waiting for %s: %w", want, err)
		}
		var m struct {
			Type      string `json:"type"`
			RequestID string `json:"request_id"`
		}
		if err := json.Unmarshal(data, &m); err != nil || m.Type != want {
			return "", fmt.Errorf("testaudio: got %.80q, want a %s message", data, want)
		}
		return m.RequestID, nil
	}
	for len(audio) > 0 {
		n := min(frameBytes, len(audio))
		if err := conn.WriteMessage(websocket.BinaryMessage, audio[:n]); err != nil {
			return "", fmt.Errorf("testaudio: sending audio: %w", err)
		}
		audio = audio[n:]
		if _, err := read("Results"); err != nil {
			return "", err
		}
	}
	if err := conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"CloseStream"}`)); err != nil {
		return "", fmt.Errorf("testaudio: sending CloseStream: %w", err)
	}
	if requestID, err = read("Metadata"); err != nil {
		return "", err
	}
	// The server's close frame; reading it answers it.
	if err := conn.SetReadDeadline(time.Now().Add(streamWait)); err != nil {
		return "", err
	}
	if _, _, err := conn.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
		return "", errors.Join(errors.New("testaudio: the stream did not close normally"), err)
	}
	return requestID, nil
}
