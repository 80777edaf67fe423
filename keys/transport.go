package keys

import (
	"fmt"
	"io"
	"net/http"
)

// maxAnswerBody bounds how much of a success answer is read: a project
// with about a million listed keys. A larger answer is an error, never cut
// short.
var maxAnswerBody int64 = 256 << 20

type captureKey struct{}

// capture is what captureTransport saw of one call's answer.
type capture struct {
	status  int // 0 until an answer arrived
	header  http.Header
	body    []byte
	readErr error
}

// captureTransport reads each answer in full for the call that put a
// *capture into the request's context, and hands the SDK an empty body in
// its place, so that the SDK neither decodes nor logs bodies.
type captureTransport struct {
	base http.RoundTripper
}

func (t *captureTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.base
	if base == nil {
		base = http.DefaultTransport
	}
	res, err := base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	capt, _ := req.Context().Value(captureKey{}).(*capture)
	if capt == nil {
		return res, nil
	}
	limit := maxAnswerBody
	if res.StatusCode < 200 || res.StatusCode > 299 {
		limit = maxErrorBody
	}
	body, readErr := io.ReadAll(io.LimitReader(res.Body, limit+1))
	res.Body.Close()
	if int64(len(body)) > limit {
		readErr = fmt.Errorf("answer exceeds %d bytes", limit)
		body = body[:limit]
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		// The status is the answer: an error body cut short or broken
		// off still becomes an *APIError, from what was read of it.
		readErr = nil
	}
	capt.status = res.StatusCode
	capt.header = res.Header
	capt.body = body
	capt.readErr = readErr
	res.Body = http.NoBody
	res.ContentLength = 0
	return res, nil
}
