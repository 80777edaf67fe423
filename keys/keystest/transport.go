package keystest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"syscall"
)

// errClosed is returned by [Server.Transport]'s RoundTrip once the server
// is closed, and for calls that were hanging when it closed.
var errClosed = errors.New("keystest: server closed")

// errAnswerLost is returned by RoundTrip for a call whose answer was lost
// (see [Server.LoseAnswer]). It matches syscall.ECONNRESET.
var errAnswerLost = fmt.Errorf("keystest: connection reset, answer lost: %w", syscall.ECONNRESET)

// Transport returns an http.RoundTripper that serves requests in memory,
// without a socket or a goroutine: RoundTrip calls the server's handler on
// the caller's goroutine, so it works inside testing/synctest bubbles
// (create the Server in the bubble). The request's URL host is ignored.
//
// RoundTrip reads and closes the request body before serving it, honours
// the request context (a call waiting on latency or a hang ends when the
// context is done, and RoundTrip returns the context's error), and returns
// an error matching syscall.ECONNRESET for a lost answer and a
// "keystest: server closed" error after Close. It is safe for concurrent use.
func (s *Server) Transport() http.RoundTripper { return memTransport{s} }

type memTransport struct{ s *Server }

func (t memTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		var err error
		body, err = io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("keystest: reading request body: %w", err)
		}
	}
	ctx := req.Context()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := t.s
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errClosed
	}
	s.inflight.Add(1)
	s.mu.Unlock()
	defer s.inflight.Done()

	in := req.Clone(ctx)
	in.Body = io.NopCloser(bytes.NewReader(body))
	in.ContentLength = int64(len(body))
	in.RequestURI = req.URL.RequestURI()
	in.RemoteAddr = "keystest-memory:0"
	if in.Host == "" {
		in.Host = req.URL.Host
	}
	w := &memWriter{header: http.Header{}}
	if aborted := serve(s.handler, w, in); aborted {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		select {
		case <-s.done:
			return nil, errClosed
		default:
		}
		return nil, errAnswerLost
	}
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return &http.Response{
		Status:        strconv.Itoa(w.status) + " " + http.StatusText(w.status),
		StatusCode:    w.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        w.header,
		Body:          io.NopCloser(bytes.NewReader(w.body.Bytes())),
		ContentLength: int64(w.body.Len()),
		Request:       req,
	}, nil
}

// serve runs h and reports whether it aborted with http.ErrAbortHandler.
// Other panics propagate.
func serve(h http.Handler, w http.ResponseWriter, r *http.Request) (aborted bool) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler { //nolint:errorlint // net/http compares the same way
				aborted = true
				return
			}
			panic(v)
		}
	}()
	h.ServeHTTP(w, r)
	return false
}

// memWriter is a minimal http.ResponseWriter that keeps the answer.
type memWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *memWriter) Header() http.Header { return w.header }

func (w *memWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
		w.header = w.header.Clone()
	}
}

func (w *memWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(b)
}
