package keys

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Sentinel errors for the answers callers branch on. An [*APIError] matches
// the one for its status code under [errors.Is]:
//
//	if errors.Is(err, keys.ErrNotFound) { /* already gone */ }
var (
	// ErrNotFound: Deepgram answered 404 (unknown project or key).
	ErrNotFound = errors.New("keys: not found")
	// ErrUnauthorized: Deepgram answered 401 (the API key is invalid,
	// expired or deleted).
	ErrUnauthorized = errors.New("keys: unauthorized")
	// ErrForbidden: Deepgram answered 403 (the API key lacks the scope).
	ErrForbidden = errors.New("keys: forbidden")
	// ErrRateLimited: Deepgram answered 429; see [APIError.RetryAfter].
	ErrRateLimited = errors.New("keys: rate limited")
)

// maxErrorBody bounds how much of an error answer is read and kept.
const maxErrorBody = 64 << 10

// maxMessage bounds the message kept from a plain-text error body.
const maxMessage = 512

// APIError is a non-2xx answer from Deepgram. Every such answer of every
// call in this package is returned as an *APIError (possibly wrapped), so
//
//	var apiErr *keys.APIError
//	if errors.As(err, &apiErr) { wait(apiErr.RetryAfter) }
//
// works, and errors.Is matches [ErrNotFound], [ErrUnauthorized],
// [ErrForbidden] and [ErrRateLimited] by status code. It never holds a
// secret: the caller's API key is scrubbed from the message.
//
// A plain value: safe to copy and to read from several goroutines; nothing
// in it changes after it is returned.
type APIError struct {
	// Op is the call that failed, e.g. "create key".
	Op string
	// StatusCode is the HTTP status.
	StatusCode int
	// Code is Deepgram's err_code or category, when the body had one.
	Code string
	// Message is Deepgram's err_msg, message (plus details) or the plain
	// text body, bounded in length.
	Message string
	// RequestID is Deepgram's request_id, when the body had one.
	RequestID string
	// RetryAfter is the Retry-After header (seconds or HTTP-date) as a
	// duration from when the answer arrived; zero when absent or invalid.
	RetryAfter time.Duration
}

// Error describes the answer: op, status, code, message and request ID.
func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("keys: ")
	if e.Op != "" {
		b.WriteString(e.Op)
		b.WriteString(": ")
	}
	fmt.Fprintf(&b, "deepgram answered %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if e.Code != "" {
		b.WriteString(": ")
		b.WriteString(e.Code)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.RequestID != "" {
		fmt.Fprintf(&b, " (request_id %s)", e.RequestID)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

// Is matches the sentinel for e's status code.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	case ErrUnauthorized:
		return e.StatusCode == http.StatusUnauthorized
	case ErrForbidden:
		return e.StatusCode == http.StatusForbidden
	case ErrRateLimited:
		return e.StatusCode == http.StatusTooManyRequests
	}
	return false
}

// Temporary reports whether the same request may succeed later: 408, 429
// and 5xx answers.
func (e *APIError) Temporary() bool {
	return e.StatusCode == http.StatusRequestTimeout || e.StatusCode == http.StatusTooManyRequests || e.StatusCode >= 500
}

// UnusableKeyError is returned by [Client.Create] when Deepgram answered
// success and named the key it created (KeyID), but the answer cannot be
// used: the secret is missing, or a time does not parse. The key exists and
// works until it expires: delete it with Client.Delete(ctx, e.KeyID).
//
//	var unusable *keys.UnusableKeyError
//	if errors.As(err, &unusable) { c.Delete(ctx, unusable.KeyID) }
//
// Neither its message nor Err holds the key's secret.
type UnusableKeyError struct {
	// KeyID is the api_key_id Deepgram created.
	KeyID string
	// Err is what is wrong with the answer.
	Err error
}

// Error names the key to delete and what is wrong with the answer.
func (e *UnusableKeyError) Error() string {
	return fmt.Sprintf("keys: create key: deepgram created key %s but %v; delete it", e.KeyID, e.Err)
}

// Unwrap returns Err.
func (e *UnusableKeyError) Unwrap() error { return e.Err }

// errorBody holds both JSON error shapes Deepgram uses.
type errorBody struct {
	// legacy shape
	ErrCode string `json:"err_code"`
	ErrMsg  string `json:"err_msg"`
	// current shape
	Category string          `json:"category"`
	Message  string          `json:"message"`
	Details  json.RawMessage `json:"details"`
	// both
	RequestID string `json:"request_id"`
}

// parseError turns a non-2xx answer into an *APIError. body is the answer's
// body (any of Deepgram's three shapes: legacy err_code/err_msg, current
// category/message/details, or plain text); header supplies Retry-After,
// read relative to now. parseError never fails: a body it cannot read becomes
// the message, bounded in length and cleaned to valid UTF-8. Every text
// goes through scrub before it is cut short, so a secret that scrub
// removes cannot survive in part.
func parseError(status int, header http.Header, body []byte, now time.Time, scrub func(string) string) *APIError {
	cut := func(s string) string { return cleanScrubbed(s, maxMessage, scrub) }
	e := &APIError{StatusCode: status}
	if header != nil {
		e.RetryAfter = parseRetryAfter(header.Get("Retry-After"), now)
	}
	trimmed := strings.TrimSpace(string(body))
	var eb errorBody
	if strings.HasPrefix(trimmed, "{") && json.Unmarshal([]byte(trimmed), &eb) == nil {
		e.RequestID = cut(eb.RequestID)
		switch {
		case eb.ErrCode != "" || eb.ErrMsg != "":
			e.Code = cut(eb.ErrCode)
			e.Message = cut(eb.ErrMsg)
			return e
		case eb.Category != "" || eb.Message != "":
			e.Code = cut(eb.Category)
			e.Message = cut(eb.Message)
			if d := detailsText(eb.Details); d != "" {
				if e.Message != "" {
					e.Message += ": "
				}
				e.Message += cut(d)
			}
			return e
		}
		if e.RequestID != "" {
			return e
		}
	}
	e.Message = cut(trimmed)
	return e
}

// detailsText renders the current shape's details, which is a string or
// any JSON value.
func detailsText(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return string(raw)
	}
	if s, ok := v.(string); ok {
		return s
	}
	// Re-encoded, so that what JSON escapes hid (\u0030…) is plain text
	// that a scrub can find.
	if b, err := json.Marshal(v); err == nil {
		return string(b)
	}
	return string(raw)
}

// clean makes s valid, printable UTF-8 of at most n bytes.
func clean(s string, n int) string { return truncate(sanitize(s), n) }

// cleanScrubbed is clean with scrub applied before and after the control
// characters go (a key split by one is whole again once it is removed)
// and before the cut (a key cut in two would no longer be found). A key
// split by what clean keeps as a space or U+FFFD (a line break, a tab, a
// byte that is not UTF-8) would survive both scrubs: when one appears once
// those are gone too, nothing of s is kept.
func cleanScrubbed(s string, n int, scrub func(string) string) string {
	out := scrub(sanitize(scrub(s)))
	squeezed := strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) || r == utf8.RuneError {
			return -1
		}
		return r
	}, out)
	if scrub(squeezed) != squeezed {
		return redacted
	}
	return truncate(out, n)
}

// sanitize makes s valid, printable UTF-8 on one line.
func sanitize(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' {
			return ' '
		}
		if unicode.IsControl(r) { // C0, DEL and C1 (e.g. U+009B CSI)
			return -1
		}
		return r
	}, s)
}

// truncate cuts s to at most n bytes on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// parseRetryAfter reads a Retry-After header value: a whole number of
// seconds or an HTTP-date, taken relative to now. It returns 0 for an empty,
// invalid, negative or past value, and caps the result at one day.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	const maxWait = 24 * time.Hour
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs > int64(maxWait/time.Second) {
			return maxWait
		}
		return time.Duration(secs) * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	d := t.Sub(now)
	if d <= 0 {
		return 0
	}
	return min(d, maxWait)
}
