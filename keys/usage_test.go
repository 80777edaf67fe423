package keys_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/keys"
)

const usageURL = testHost + "/v1/projects/" + testProject + "/usage"

// documentedUsage is the example answer of Deepgram's API reference
// (UsageV1Response), tokens and tts included.
const documentedUsage = `{"start":"2024-10-16","end":"2024-10-23","resolution":{"units":"day","amount":1},
 "results":[
  {"start":"2024-10-16","end":"2024-10-16","hours":1097.4274322222223,"total_hours":1099.3888366666667,"requests":425109,
   "tokens":{"in":24770,"out":7521},"tts":{"characters":9004185,"requests":23126}},
  {"start":"2024-10-17","end":"2024-10-17","hours":0.0005555555555555556,"total_hours":0.0005555555555555556,"requests":1}
 ]}`

func TestUsageSendsQuery(t *testing.T) {
	ist := time.FixedZone("IST", 5*3600+1800)
	tests := []struct {
		name string
		q    keys.UsageQuery
		want url.Values
	}{
		{"zero query", keys.UsageQuery{}, url.Values{}},
		{"UTC dates", keys.UsageQuery{Start: time.Date(2025, 3, 1, 14, 0, 0, 0, time.UTC), End: time.Date(2025, 3, 2, 0, 0, 0, 0, time.UTC)},
			url.Values{"start": {"2025-03-01"}, "end": {"2025-03-02"}}},
		{"dates of another zone are sent as UTC days", keys.UsageQuery{Start: time.Date(2025, 3, 1, 2, 0, 0, 0, ist), End: time.Date(2025, 3, 1, 6, 0, 0, 0, ist)},
			url.Values{"start": {"2025-02-28"}, "end": {"2025-03-01"}}},
		{"same day", keys.UsageQuery{Start: time.Date(2025, 3, 1, 23, 0, 0, 0, time.UTC), End: time.Date(2025, 3, 1, 1, 0, 0, 0, time.UTC)},
			url.Values{"start": {"2025-03-01"}, "end": {"2025-03-01"}}},
		{"end only", keys.UsageQuery{End: time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)}, url.Values{"end": {"2025-03-01"}}},
		{"tag with reserved characters", keys.UsageQuery{Tag: "dglease:user=a%20b&c=d+é"}, url.Values{"tag": {"dglease:user=a%20b&c=d+é"}}},
		{"tag of 128 bytes", keys.UsageQuery{Tag: strings.Repeat("t", 128)}, url.Values{"tag": {strings.Repeat("t", 128)}}},
		{"accessor", keys.UsageQuery{Accessor: "6b1f2c1e-0000-4000-8000-000000000001"}, url.Values{"accessor": {"6b1f2c1e-0000-4000-8000-000000000001"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, rec := recordOne(t, testProject, http.MethodGet, usageURL, documentedUsage)
			_, err := c.Usage(context.Background(), tt.q)
			require.NoError(t, err)
			req := rec.only(t)
			assert.Equal(t, http.MethodGet, req.Method)
			assert.Equal(t, "/v1/projects/"+testProject+"/usage", req.URL.Path)
			assert.Equal(t, tt.want, req.URL.Query())
			assert.Empty(t, req.Body)
			assertCommonHeaders(t, req)
		})
	}
}

func TestUsageDecodesAnswer(t *testing.T) {
	c, _ := recordOne(t, testProject, http.MethodGet, usageURL, documentedUsage)
	got, err := c.Usage(context.Background(), keys.UsageQuery{})
	require.NoError(t, err)

	day := func(d int) time.Time { return time.Date(2024, 10, d, 0, 0, 0, 0, time.UTC) }
	want := &keys.Usage{
		Start:      day(16),
		End:        day(23),
		Resolution: keys.UsageResolution{Units: "day", Amount: 1},
		Periods: []keys.UsagePeriod{
			{Start: day(16), End: day(16), Hours: 1097.4274322222223, TotalHours: 1099.3888366666667, Requests: 425109},
			{Start: day(17), End: day(17), Hours: 0.0005555555555555556, TotalHours: 0.0005555555555555556, Requests: 1},
		},
	}
	assert.Equal(t, want, got)
	assert.Equal(t, 2*time.Second, got.Periods[1].Audio(), "two seconds, not 1.9999999s")
	assert.Equal(t, 1097*time.Hour+25*time.Minute+38*time.Second+756*time.Millisecond, got.Periods[0].Audio())
	assert.Equal(t, got.Periods[0].Audio()+2*time.Second, got.Audio())
	assert.Equal(t, 425110, got.Requests())
	// One millisecond in hours is 0.9999999999999999 ms back: rounded, not
	// truncated.
	assert.Equal(t, time.Millisecond, keys.UsagePeriod{Hours: 1.0 / 3600000}.Audio())
}

func TestUsageAnswers(t *testing.T) {
	tests := []struct {
		name   string
		answer string
		want   *keys.Usage
	}{
		{"no usage", `{"start":"2025-01-01","end":"2025-01-02","resolution":{"units":"day","amount":1},"results":[]}`,
			&keys.Usage{Start: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), End: time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC),
				Resolution: keys.UsageResolution{Units: "day", Amount: 1}}},
		{"empty object", `{}`, &keys.Usage{}},
		{"RFC 3339 times, as older answers carried", `{"start":"2025-01-01T00:00:00Z","results":[{"start":"2025-01-01T00:00:00Z","hours":1,"requests":2}]}`,
			&keys.Usage{Start: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
				Periods: []keys.UsagePeriod{{Start: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), Hours: 1, Requests: 2}}}},
		{"RFC 3339 times with an offset are their UTC day", `{"start":"2025-01-02T01:30:00+02:00","end":"2025-01-02T12:00:00.5-05:00"}`,
			&keys.Usage{Start: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), End: time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := recordOne(t, testProject, http.MethodGet, usageURL, tt.answer)
			got, err := c.Usage(context.Background(), keys.UsageQuery{})
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestUsageUnusableAnswer(t *testing.T) {
	tests := []struct {
		name, answer, want string
	}{
		{"bad start", `{"start":"yesterday"}`, `start: "yesterday" is not a date`},
		{"bad period end", `{"results":[{"end":"2025-13-01"}]}`, "results[0].end"},
		{"negative hours", `{"results":[{"hours":-1}]}`, "negative hours"},
		{"fractional requests", `{"results":[{"requests":1.5}]}`, "results[0].requests: 1.5 is not a count"},
		{"negative resolution", `{"resolution":{"units":"day","amount":-1}}`, "resolution.amount: -1 is not a count"},
		{"huge resolution", `{"resolution":{"units":"day","amount":1e300}}`, "resolution.amount: 1e+300 is not a count"},
		{"not JSON", `<html>`, "not the expected JSON"},
		{"wrong type", `{"results":{"hours":1}}`, "not the expected JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := recordOne(t, testProject, http.MethodGet, usageURL, tt.answer)
			u, err := c.Usage(context.Background(), keys.UsageQuery{})
			assert.Nil(t, u)
			assertKeysError(t, err, "get usage", tt.want)
		})
	}
}

func TestUsageQueryValidation(t *testing.T) {
	day := time.Date(2025, 3, 2, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		q    keys.UsageQuery
		want []string
	}{
		{"end before start", keys.UsageQuery{Start: day, End: day.Add(-time.Nanosecond)}, []string{"ends on 2025-03-01, before it starts (2025-03-02)"}},
		{"tag over 128 bytes", keys.UsageQuery{Tag: strings.Repeat("t", 129)}, []string{"usage query tag", "129 bytes"}},
		{"tag not UTF-8", keys.UsageQuery{Tag: "\xff"}, []string{"usage query tag", "UTF-8"}},
		{"accessor with a slash", keys.UsageQuery{Accessor: "a/b"}, []string{"accessor", "a/b"}},
		{"accessor with a space", keys.UsageQuery{Accessor: "a b"}, []string{"accessor"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// No project: the query is checked before discovery too.
			c, mock := newClient(t, "")
			u, err := c.Usage(context.Background(), tt.q)
			assert.Nil(t, u)
			assertKeysError(t, err, tt.want...)
			assert.Zero(t, mock.GetTotalCallCount())
		})
	}
}

// A tag of exactly MaxTagLen bytes is sent as it is.
func TestCreateSendsTagOfMaxLen(t *testing.T) {
	c, rec := recordOne(t, testProject, http.MethodPost, keysURL, createAnswer("key-1"))
	tag := strings.Repeat("日", keys.MaxTagLen/3) + "ab" // 126 + 2 bytes
	require.Len(t, tag, keys.MaxTagLen)
	_, err := c.Create(context.Background(), keys.Spec{Scopes: []string{"usage:write"}, Tags: []string{tag}, TTL: time.Minute})
	require.NoError(t, err)
	assert.JSONEq(t, `["`+tag+`"]`, string(bodyFields(t, rec.only(t).Body)["tags"]))
}

// An unusable answer that echoes the API key does not put it in the error.
func TestUsageUnusableAnswerIsScrubbed(t *testing.T) {
	c, _ := recordOne(t, testProject, http.MethodGet, usageURL, `{"start":"`+testAPIKey+`"}`)
	_, err := c.Usage(context.Background(), keys.UsageQuery{})
	assertKeysError(t, err, "get usage", "start:")
}

func TestUsageUnusableAnswerIsScrubbedBeforeItIsCut(t *testing.T) {
	// The key sits past where the quoted value is cut short: scrubbing
	// after the cut would miss it and leave its first part in the error.
	c, _ := recordOne(t, testProject, http.MethodGet, usageURL, `{"start":"`+strings.Repeat("x", 40)+testAPIKey+`"}`)
	_, err := c.Usage(context.Background(), keys.UsageQuery{})
	assertKeysError(t, err, "get usage", "start:")
}

func TestUsageUnusableAnswerSplitByAControlCharacterIsScrubbed(t *testing.T) {
	// Removing the NUL would make the key whole again after the scrub.
	c, _ := recordOne(t, testProject, http.MethodGet, usageURL, `{"start":"`+testAPIKey[:20]+`\u0000`+testAPIKey[20:]+`"}`)
	_, err := c.Usage(context.Background(), keys.UsageQuery{})
	assertKeysError(t, err, "get usage", "start:")
}
