package fakelisten_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"

	"github.com/dvonthenen/websocket"
)

// pipeDialer returns a WebSocket dialer whose every connection is a
// net.Pipe served by h on a new goroutine, so streams can run inside a
// testing/synctest bubble, where real sockets cannot.
func pipeDialer(h http.Handler) *websocket.Dialer {
	return &websocket.Dialer{
		NetDialContext: func(context.Context, string, string) (net.Conn, error) {
			client, server := net.Pipe()
			go servePipe(h, server)
			return client, nil
		},
	}
}

// servePipe reads one HTTP request from conn and serves it with h.
func servePipe(h http.Handler, conn net.Conn) {
	br := bufio.NewReader(conn)
	req, err := http.ReadRequest(br)
	if err != nil {
		_ = conn.Close()
		return
	}
	w := &pipeResponse{conn: conn, rw: bufio.NewReadWriter(br, bufio.NewWriter(conn)), header: http.Header{}}
	h.ServeHTTP(w, req)
	if !w.hijacked {
		w.flush(req)
		_ = conn.Close()
	}
}

// pipeResponse is a hijackable http.ResponseWriter over a net.Pipe.
type pipeResponse struct {
	conn     net.Conn
	rw       *bufio.ReadWriter
	header   http.Header
	status   int
	body     bytes.Buffer
	hijacked bool
}

func (w *pipeResponse) Header() http.Header { return w.header }

func (w *pipeResponse) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *pipeResponse) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(b)
}

func (w *pipeResponse) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, errors.New("already hijacked")
	}
	w.hijacked = true
	return w.conn, w.rw, nil
}

// flush writes a response that was not hijacked.
func (w *pipeResponse) flush(req *http.Request) {
	w.WriteHeader(http.StatusOK)
	resp := &http.Response{
		StatusCode:    w.status,
		ProtoMajor:    1,
		ProtoMinor:    1,
		Request:       req,
		Header:        w.header,
		ContentLength: int64(w.body.Len()),
		Body:          io.NopCloser(&w.body),
		Close:         true,
	}
	_ = resp.Write(w.conn)
}
