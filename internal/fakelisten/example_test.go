package fakelisten_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/dvonthenen/websocket"

	"github.com/dglease/dglease/internal/fakelisten"
	"github.com/dglease/dglease/internal/testaudio"
)

func Example() {
	const key = "0123456789abcdef0123456789abcdef01234567"
	srv := httptest.NewServer(fakelisten.Handler(func(scheme, secret string) (string, error) {
		if scheme != fakelisten.SchemeToken || secret != key {
			return "", errors.New("unknown credential")
		}
		return "demo account", nil
	}))
	defer srv.Close()

	// A browser would pass the key as the subprotocols ["token", key].
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/v1/listen?encoding=linear16&sample_rate=16000"
	conn, _, err := websocket.DefaultDialer.Dial(url, http.Header{"Authorization": {"Token " + key}})
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	var msg struct {
		Type     string  `json:"type"`
		Duration float64 `json:"duration"`
		Channel  struct {
			Alternatives []struct {
				Transcript string `json:"transcript"`
			} `json:"alternatives"`
		} `json:"channel"`
	}
	_ = conn.WriteMessage(websocket.BinaryMessage, testaudio.PCM())
	_ = conn.ReadJSON(&msg)
	fmt.Println(msg.Type, msg.Duration, msg.Channel.Alternatives[0].Transcript)

	_ = conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"CloseStream"}`))
	_ = conn.ReadJSON(&msg)
	fmt.Println(msg.Type, msg.Duration)

	_, _, err = conn.ReadMessage()
	fmt.Println(err)
	// Output:
	// Results 2 hello from the fake deepgram
	// Metadata 2
	// websocket: close 1000 (normal)
}
