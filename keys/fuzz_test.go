package keys

import (
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// maxFieldLen bounds Code and RequestID: 512 bytes plus a "…".
const maxFieldLen = 512 + len("…")

// maxMessageLen bounds Message: message and details (current shape) of up
// to maxFieldLen each, joined by ": ".
const maxMessageLen = 2*maxFieldLen + len(": ")

func FuzzParseError(f *testing.F) {
	seeds := []struct {
		status int
		body   string
	}{
		{400, `{"err_code":"BAD_REQUEST","err_msg":"Invalid JSON.","request_id":"r-1"}`},
		{401, `{"category":"INVALID_AUTH","message":"Invalid credentials.","details":"bad key","request_id":"r-2"}`},
		{403, `{"category":"INSUFFICIENT_PERMISSIONS","message":"no","details":{"scope":["keys:write"]}}`},
		{404, `{"err_code":"PROJECT_NOT_FOUND"}`},
		{429, "Too Many Requests"},
		{500, ""},
		{502, "<html><body>Bad Gateway</body></html>"},
		{503, "\xff\xfe\x00\x01 broken \u202e utf-8"},
		{200, `{"request_id":"only"}`},
		{-1, `{"err_msg":` + strings.Repeat(`"`, 3)},
		{999, `{"message":"` + strings.Repeat("é", 600) + `","details":"` + strings.Repeat("ü", 600) + `"}`},
		{400, `{"details":"` + strings.Repeat("\\u0000", 100) + `"}`},
	}
	for _, s := range seeds {
		f.Add(s.status, []byte(s.body))
	}
	now := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		e := parseError(status, http.Header{"Retry-After": {string(body)}}, body, now, identity)
		if e == nil {
			t.Fatal("nil *APIError")
		}
		if e.StatusCode != status {
			t.Errorf("StatusCode = %d, want %d", e.StatusCode, status)
		}
		for name, s := range map[string]string{"Code": e.Code, "Message": e.Message, "RequestID": e.RequestID} {
			if !utf8.ValidString(s) {
				t.Errorf("%s is not valid UTF-8: %q", name, s)
			}
			if strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) }) {
				t.Errorf("%s has control characters: %q", name, s)
			}
		}
		if len(e.Message) > maxMessageLen {
			t.Errorf("Message is %d bytes, more than %d", len(e.Message), maxMessageLen)
		}
		if len(e.Code) > maxFieldLen || len(e.RequestID) > maxFieldLen {
			t.Errorf("Code/RequestID are %d/%d bytes, more than %d", len(e.Code), len(e.RequestID), maxFieldLen)
		}
		if e.RetryAfter < 0 || e.RetryAfter > 24*time.Hour {
			t.Errorf("RetryAfter = %v", e.RetryAfter)
		}
		msg := e.Error()
		if !strings.HasPrefix(msg, "keys: ") || !utf8.ValidString(msg) {
			t.Errorf("Error() = %q", msg)
		}
	})
}

func FuzzParseRetryAfter(f *testing.F) {
	now := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	for _, s := range []string{
		"", "0", "1", "120", "-1", "86400", "86401", "99999999999999999999", "9223372036854775807",
		"1.5", "soon", " 7 ", "+3",
		"Wed, 21 Oct 2015 07:28:00 GMT",
		now.Add(time.Minute).Format(http.TimeFormat),
		now.Add(72 * time.Hour).Format(http.TimeFormat),
		now.Add(time.Hour).Format(time.RFC850),
		now.Add(time.Hour).Format(time.ANSIC),
		"Fri, 31 Dec 9999 23:59:59 GMT",
		"Mon, 01 Jan 0001 00:00:00 GMT",
	} {
		f.Add(s, int64(0))
	}
	f.Add("Wed, 21 Oct 2015 07:28:00 GMT", int64(-1<<62))
	f.Add("60", int64(1<<62))
	f.Fuzz(func(t *testing.T, v string, nowOffset int64) {
		got := parseRetryAfter(v, now.Add(time.Duration(nowOffset)))
		if got < 0 {
			t.Errorf("parseRetryAfter(%q) = %v, negative", v, got)
		}
		if got > 24*time.Hour {
			t.Errorf("parseRetryAfter(%q) = %v, more than a day", v, got)
		}
	})
}
