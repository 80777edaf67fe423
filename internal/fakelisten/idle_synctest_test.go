package fakelisten_test

import (
	"errors"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dvonthenen/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/internal/fakelisten"
)

// openInBubble opens a stream over an in-memory pipe; call it inside a
// synctest bubble. returned is closed when ServeHTTP returns.
func openInBubble(t *testing.T, opts ...fakelisten.Option) (conn *websocket.Conn, returned <-chan struct{}) {
	t.Helper()
	return openInBubbleAt(t, "ws://fake.invalid/v1/listen", opts...)
}

// openInBubbleAt is openInBubble with the stream's URL.
func openInBubbleAt(t *testing.T, url string, opts ...fakelisten.Option) (conn *websocket.Conn, returned <-chan struct{}) {
	t.Helper()
	done := make(chan struct{})
	h := fakelisten.Handler(allowAll, opts...)
	d := pipeDialer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(done)
		h.ServeHTTP(w, r)
	}))
	conn, _, err := d.Dial(url, http.Header{"Authorization": {"Token " + testKey}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn, done
}

// readClose reads until the connection ends and returns the code and text
// of the server's close frame, or -1 and the error if it ended without one.
func readClose(conn *websocket.Conn) (code int, text string) {
	for {
		_, _, err := conn.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code, ce.Text
		}
		return -1, err.Error()
	}
}

func TestIdleTimeoutDefaultsToTenSeconds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		conn, returned := openInBubble(t)
		opened := time.Now()

		code, text := readClose(conn)
		assert.Equal(t, websocket.CloseInternalServerErr, code)
		assert.Contains(t, text, "did not receive audio data or a text message")
		assert.Equal(t, fakelisten.DefaultIdleTimeout, time.Since(opened))
		<-returned
	})
}

func TestKeepAliveAndAudioKeepStreamOpen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		conn, returned := openInBubble(t, fakelisten.WithIdleTimeout(3*time.Second))
		closed := make(chan int, 1)
		go func() { code, _ := readClose(conn); closed <- code }()

		// A minute of activity, each gap shorter than the idle timeout.
		for i := range 30 {
			time.Sleep(2 * time.Second) // fake time: advances the bubble's clock
			var err error
			if i%2 == 0 {
				err = conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"KeepAlive"}`))
			} else {
				err = conn.WriteMessage(websocket.BinaryMessage, make([]byte, 320))
			}
			require.NoError(t, err)
			synctest.Wait()
			select {
			case code := <-closed:
				t.Fatalf("stream closed with %d after %d messages", code, i)
			default:
			}
		}

		last := time.Now()
		code := <-closed
		assert.Equal(t, websocket.CloseInternalServerErr, code)
		assert.Equal(t, 3*time.Second, time.Since(last))
		<-returned
	})
}
