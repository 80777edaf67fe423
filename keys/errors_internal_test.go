package keys

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"   ", 0},
		{"0", 0},
		{"1", time.Second},
		{"120", 2 * time.Minute},
		{" 30 ", 30 * time.Second},
		{"+5", 5 * time.Second},
		{"-5", 0},
		{"1.5", 0},
		{"5s", 0},
		{"soon", 0},
		{"86400", 24 * time.Hour},
		{"86401", 24 * time.Hour},
		{"99999999999999999999", 0}, // not a representable number of seconds
		{"9223372036854775807", 24 * time.Hour},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(time.Hour).Format(time.RFC850), time.Hour},
		{now.Add(2 * time.Minute).Format(time.ANSIC), 2 * time.Minute},
		{now.Format(http.TimeFormat), 0},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{now.Add(48 * time.Hour).Format(http.TimeFormat), 24 * time.Hour},
		{"Wed, 21 Oct 2015 07:28:00 GMT", 0},
		{now.Add(time.Minute).Format(time.RFC3339), 0}, // not an HTTP-date
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got := parseRetryAfter(tt.in, now)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestParseError(t *testing.T) {
	now := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	long := strings.Repeat("é", 2000)
	tests := []struct {
		name   string
		status int
		header http.Header
		body   string
		want   APIError
	}{
		{
			name:   "legacy",
			status: 401,
			body:   `{"err_code":"INVALID_AUTH","err_msg":"Invalid credentials.","request_id":"r-1"}`,
			want:   APIError{StatusCode: 401, Code: "INVALID_AUTH", Message: "Invalid credentials.", RequestID: "r-1"},
		},
		{
			name:   "current with string details",
			status: 403,
			body:   `{"category":"INSUFFICIENT_PERMISSIONS","message":"Forbidden.","details":"needs keys:write","request_id":"r-2"}`,
			want:   APIError{StatusCode: 403, Code: "INSUFFICIENT_PERMISSIONS", Message: "Forbidden.: needs keys:write", RequestID: "r-2"},
		},
		{
			name:   "current with object details",
			status: 400,
			body:   `{"category":"BAD_REQUEST","message":"Bad.","details":{"field":"scopes"}}`,
			want:   APIError{StatusCode: 400, Code: "BAD_REQUEST", Message: `Bad.: {"field":"scopes"}`},
		},
		{
			name:   "current with null details",
			status: 404,
			body:   `{"category":"PROJECT_NOT_FOUND","message":"Not found.","details":null}`,
			want:   APIError{StatusCode: 404, Code: "PROJECT_NOT_FOUND", Message: "Not found."},
		},
		{
			name:   "request_id only",
			status: 500,
			body:   `{"request_id":"r-3"}`,
			want:   APIError{StatusCode: 500, RequestID: "r-3"},
		},
		{
			name:   "unknown JSON kept as text",
			status: 502,
			body:   `{"error":"bad gateway"}`,
			want:   APIError{StatusCode: 502, Message: `{"error":"bad gateway"}`},
		},
		{
			name:   "plain text with newlines and controls",
			status: 503,
			body:   "line one\nline\x00two\x1b[31m\r\n",
			want:   APIError{StatusCode: 503, Message: "line one linetwo[31m"},
		},
		{
			name:   "invalid UTF-8",
			status: 500,
			body:   "bad \xff\xfe byte",
			want:   APIError{StatusCode: 500, Message: "bad \uFFFD byte"},
		},
		{
			name:   "empty body",
			status: 500,
			want:   APIError{StatusCode: 500},
		},
		{
			name:   "Retry-After",
			status: 429,
			header: http.Header{"Retry-After": {"3"}},
			body:   "slow down",
			want:   APIError{StatusCode: 429, Message: "slow down", RetryAfter: 3 * time.Second},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseError(tt.status, tt.header, []byte(tt.body), now, identity)
			require.NotNil(t, got)
			assert.Equal(t, tt.want, *got)
		})
	}

	t.Run("long body is bounded", func(t *testing.T) {
		got := parseError(500, nil, []byte(long), now, identity)
		assert.LessOrEqual(t, len(got.Message), 520)
		assert.True(t, strings.HasSuffix(got.Message, "…"))
		assert.True(t, strings.HasPrefix(got.Message, "ééé"))
	})
}

// identity is a scrub that removes nothing.
func identity(s string) string { return s }
