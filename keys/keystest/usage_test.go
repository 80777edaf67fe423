package keystest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/internal/dgday"
	"github.com/dglease/dglease/internal/testaudio"
	"github.com/dglease/dglease/keys"
	"github.com/dglease/dglease/keys/keystest"
)

// stream streams audio through the fake with an API key secret, as a
// browser does, and waits until the fake has recorded it.
func stream(t *testing.T, srv *keystest.Server, secret string, audio []byte, tags ...string) {
	t.Helper()
	_, err := testaudio.Stream(srv.ListenURL(), []string{"token", secret}, audio, tags...)
	require.NoError(t, err)
}

// usageKey mints a usage:write key that lives ttl, with the given tags.
func usageKey(t *testing.T, srv *keystest.Server, ttl time.Duration, tags ...string) *keys.Key {
	t.Helper()
	k, err := srv.Client().Create(context.Background(), keys.Spec{Comment: "stream", Scopes: []string{"usage:write"}, Tags: tags, TTL: ttl})
	require.NoError(t, err)
	return k
}

// awayFromMidnight moves srv's clock past the next UTC midnight if that is
// less than a minute away, so that a test's streams and its usage queries
// fall on one UTC day whatever the time it runs at.
func awayFromMidnight(srv *keystest.Server) {
	now := srv.Now()
	if left := dgday.Of(now).Add(24 * time.Hour).Sub(now); left < time.Minute {
		srv.Advance(left)
	}
}

// today is the fake's current UTC day, as a usage query wants it.
func today(srv *keystest.Server) keys.UsageQuery {
	return keys.UsageQuery{Start: srv.Now(), End: srv.Now()}
}

// TestUsageCountsStreamsByTagAndAccessor: every stream is booked against
// its key's ID and tags, with its audio's exact length; the usage call
// filters by either.
func TestUsageCountsStreamsByTagAndAccessor(t *testing.T) {
	srv := keystest.NewServer(t)
	awayFromMidnight(srv)
	alice := usageKey(t, srv, time.Hour, "team-a", "user-alice")
	bob := usageKey(t, srv, time.Hour, "team-a", "user-bob")
	stream(t, srv, alice.Secret, testaudio.Silence(1500*time.Millisecond))
	stream(t, srv, alice.Secret, testaudio.Silence(500*time.Millisecond))
	stream(t, srv, bob.Secret, testaudio.Silence(3*time.Second+62500*time.Microsecond))
	require.NoError(t, srv.Client().Delete(context.Background(), alice.ID))
	stream(t, srv, bob.Secret, nil) // no audio: a request of zero seconds

	// The fake books 3.0625s exactly (see Streams below); keys.Client
	// reads Deepgram's hours back to the millisecond.
	tests := []struct {
		name     string
		q        keys.UsageQuery
		audio    time.Duration
		requests int
	}{
		{"the project", keys.UsageQuery{}, 5063 * time.Millisecond, 4},
		{"a user's tag, key deleted since", keys.UsageQuery{Tag: "user-alice"}, 2 * time.Second, 2},
		{"a shared tag", keys.UsageQuery{Tag: "team-a"}, 5063 * time.Millisecond, 4},
		{"an accessor", keys.UsageQuery{Accessor: bob.ID}, 3063 * time.Millisecond, 2},
		{"an unknown tag", keys.UsageQuery{Tag: "user-carol"}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := tt.q
			q.Start, q.End = srv.Now(), srv.Now()
			u, err := srv.Client().Usage(context.Background(), q)
			require.NoError(t, err)
			assert.Equal(t, tt.audio, u.Audio())
			assert.Equal(t, tt.requests, u.Requests())
			assert.Equal(t, keys.UsageResolution{Units: "day", Amount: 1}, u.Resolution)
			day := dgday.Of(srv.Now())
			assert.Equal(t, day, u.Start)
			assert.Equal(t, day, u.End)
			if tt.requests > 0 {
				require.Len(t, u.Periods, 1)
				assert.Equal(t, day, u.Periods[0].Start)
			} else {
				assert.Empty(t, u.Periods, "no period without usage")
			}
		})
	}

	got := srv.Streams()
	require.Len(t, got, 4)
	assert.Equal(t, alice.ID, got[0].Accessor)
	assert.Equal(t, []string{"team-a", "user-alice"}, got[0].Tags)
	assert.Equal(t, 1500*time.Millisecond, got[0].Audio)
	assert.Equal(t, int64(48000), got[0].Bytes)
	assert.False(t, got[0].Ended.Before(got[0].Opened))
	assert.NotEmpty(t, got[0].RequestID)
	assert.Equal(t, 3*time.Second+62500*time.Microsecond, got[2].Audio, "exact")
	assert.Equal(t, bob.ID, got[3].Accessor)
	assert.Zero(t, got[3].Audio)
}

// TestUsageNeedsUsageRead: reading usage takes usage:read, directly or
// through a role; a usage:write key, such as a leased one, gets 403.
func TestUsageNeedsUsageRead(t *testing.T) {
	srv := keystest.NewServer(t, keystest.WithoutListener(), keystest.WithAdminScopes("owner"))
	tests := []struct {
		scopes []string
		ok     bool
	}{
		{[]string{"usage:write"}, false},
		{[]string{"keys:read", "keys:write"}, false},
		{[]string{"usage:read"}, true},
		{[]string{"member"}, true},
	}
	for _, tt := range tests {
		k := srv.AddKey(keys.Spec{Scopes: tt.scopes})
		_, err := srv.ClientFor(k.Secret, srv.ProjectID()).Usage(context.Background(), keys.UsageQuery{})
		if tt.ok {
			assert.NoError(t, err, "%v", tt.scopes)
			continue
		}
		var apiErr *keys.APIError
		require.ErrorAs(t, err, &apiErr, "%v", tt.scopes)
		assert.ErrorIs(t, err, keys.ErrForbidden, "%v", tt.scopes)
		assert.Equal(t, "INSUFFICIENT_PERMISSIONS", apiErr.Code)
		assert.Contains(t, apiErr.Message, "usage:read")
	}
	_, err := srv.Client().Usage(context.Background(), keys.UsageQuery{})
	assert.NoError(t, err, "the default admin key reads usage")
}

// TestUsageByDay: a stream counts on the UTC day it opened, on the
// server's clock; the range takes whole days, both ends included.
func TestUsageByDay(t *testing.T) {
	srv := keystest.NewServer(t)
	awayFromMidnight(srv)
	k := usageKey(t, srv, time.Hour, "user-alice")
	day1 := srv.Now()
	stream(t, srv, k.Secret, testaudio.Silence(time.Second))
	srv.Advance(48 * time.Hour)
	k = usageKey(t, srv, time.Hour, "user-alice") // the first one has expired
	day3 := srv.Now()
	stream(t, srv, k.Secret, testaudio.Silence(2*time.Second))
	stream(t, srv, k.Secret, testaudio.Silence(2*time.Second))

	c := srv.Client()
	u, err := c.Usage(context.Background(), keys.UsageQuery{Tag: "user-alice"}) // from the first request to today
	require.NoError(t, err)
	require.Len(t, u.Periods, 2)
	assert.Equal(t, keys.UsagePeriod{Start: dgday.Of(day1), End: dgday.Of(day1), Hours: 1.0 / 3600, TotalHours: 1.0 / 3600, Requests: 1}, u.Periods[0])
	assert.Equal(t, 4*time.Second, u.Periods[1].Audio())
	assert.Equal(t, 2, u.Periods[1].Requests)
	assert.Equal(t, dgday.Of(day1), u.Start, "defaults to the first request")
	assert.Equal(t, dgday.Of(day3), u.End, "defaults to today")

	u, err = c.Usage(context.Background(), keys.UsageQuery{Start: day1.Add(24 * time.Hour), End: day3})
	require.NoError(t, err)
	assert.Equal(t, 4*time.Second, u.Audio(), "day 2 and day 3")
	u, err = c.Usage(context.Background(), keys.UsageQuery{Start: day1, End: day1.Add(24 * time.Hour)})
	require.NoError(t, err)
	assert.Equal(t, time.Second, u.Audio(), "day 1 and day 2")
}

// TestUsageCountsQueryTags: Deepgram applies the tag parameters of a
// request as well as its key's tags, so whoever holds a key can book its
// audio under any tag, another user's included.
func TestUsageCountsQueryTags(t *testing.T) {
	srv := keystest.NewServer(t)
	awayFromMidnight(srv)
	mallory := usageKey(t, srv, time.Hour, "user-mallory")
	stream(t, srv, mallory.Secret, testaudio.Silence(time.Second), "user-bob", "user-mallory")

	for _, tag := range []string{"user-bob", "user-mallory"} {
		q := today(srv)
		q.Tag = tag
		u, err := srv.Client().Usage(context.Background(), q)
		require.NoError(t, err)
		assert.Equal(t, time.Second, u.Audio(), tag)
	}
	assert.Equal(t, []string{"user-mallory", "user-bob"}, srv.Streams()[0].Tags, "each tag once, the key's first")
}

// TestUsageOfGrantTokenStreams: a grant token carries no tags; its
// streams count against the key that minted it.
func TestUsageOfGrantTokenStreams(t *testing.T) {
	srv := keystest.NewServer(t)
	awayFromMidnight(srv)
	tok, err := srv.Client().Grant(context.Background(), time.Minute)
	require.NoError(t, err)
	_, err = testaudio.Stream(srv.ListenURL(), []string{"bearer", tok.Secret}, testaudio.Silence(time.Second))
	require.NoError(t, err)

	got := srv.Streams()
	require.Len(t, got, 1)
	assert.Equal(t, srv.AdminKeyID(), got[0].Accessor)
	assert.Empty(t, got[0].Tags)
	q := today(srv)
	q.Accessor = srv.AdminKeyID()
	u, err := srv.Client().Usage(context.Background(), q)
	require.NoError(t, err)
	assert.Equal(t, time.Second, u.Audio())
}

// get sends GET path?query to srv with the admin key, in memory, and
// returns the status and the legacy error code, if any.
func get(t *testing.T, srv *keystest.Server, path string, query url.Values) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+path+"?"+query.Encode(), nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Token "+srv.AdminKey())
	res, err := srv.Transport().RoundTrip(req)
	require.NoError(t, err)
	defer res.Body.Close()
	var body struct {
		ErrCode string `json:"err_code"`
	}
	require.NoError(t, json.NewDecoder(res.Body).Decode(&body))
	return res.StatusCode, body.ErrCode
}

func TestUsageRefusesBadQueries(t *testing.T) {
	srv := keystest.NewServer(t, keystest.WithoutListener())
	path := "/v1/projects/" + srv.ProjectID() + "/usage"
	tests := []struct {
		name  string
		query url.Values
	}{
		{"a filter the fake lacks", url.Values{"model": {"nova-3"}}},
		{"a date-time start", url.Values{"start": {"2025-01-01T00:00:00Z"}}},
		{"a bad end", url.Values{"end": {"soon"}}},
		{"end before start", url.Values{"start": {"2025-01-02"}, "end": {"2025-01-01"}}},
		{"two accessors", url.Values{"accessor": {"a", "b"}}},
	}
	for _, tt := range tests {
		status, code := get(t, srv, path, tt.query)
		assert.Equal(t, http.StatusBadRequest, status, tt.name)
		assert.Equal(t, "BAD_REQUEST", code, tt.name)
	}
	status, _ := get(t, srv, path, url.Values{"start": {"2025-01-01"}, "method": {"streaming"}, "endpoint": {"listen"}, "tag": {"a", "b"}})
	assert.Equal(t, http.StatusOK, status, "every filter the fake takes")
	status, code := get(t, srv, "/v1/projects/other/usage", nil)
	assert.Equal(t, http.StatusNotFound, status)
	assert.Equal(t, "PROJECT_NOT_FOUND", code)
}

// TestUsageFaults: usage is an Op like the others for fault injection.
func TestUsageFaults(t *testing.T) {
	srv := keystest.NewServer(t, keystest.WithoutListener())
	srv.Fail(keystest.OpUsage, keystest.Fault{Status: http.StatusServiceUnavailable})
	_, err := srv.Client().Usage(context.Background(), keys.UsageQuery{})
	var apiErr *keys.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, http.StatusServiceUnavailable, apiErr.StatusCode)
	reqs := srv.Requests()
	require.NotEmpty(t, reqs)
	assert.Equal(t, keystest.OpUsage, reqs[len(reqs)-1].Op)
	assert.Equal(t, "usage", keystest.OpUsage.String())
}

// TestCreateRefusesWhatDeepgramRefuses: a tag over Deepgram's documented
// 128 characters and a comment over the fake's 256 are refused with 400,
// as a client that does not check them (the SDK's APIRequest) would see.
func TestCreateRefusesWhatDeepgramRefuses(t *testing.T) {
	srv := keystest.NewServer(t, keystest.WithoutListener())
	create := func(body map[string]any) (int, string) {
		t.Helper()
		b, err := json.Marshal(body)
		require.NoError(t, err)
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/projects/"+srv.ProjectID()+"/keys", bytes.NewReader(b))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Token "+srv.AdminKey())
		res, err := srv.Transport().RoundTrip(req)
		require.NoError(t, err)
		defer res.Body.Close()
		var e struct {
			ErrCode string `json:"err_code"`
			ErrMsg  string `json:"err_msg"`
		}
		require.NoError(t, json.NewDecoder(res.Body).Decode(&e))
		if res.StatusCode != http.StatusOK {
			assert.Equal(t, "BAD_REQUEST", e.ErrCode)
		}
		return res.StatusCode, e.ErrMsg
	}
	spec := func(comment string, tags ...string) map[string]any {
		return map[string]any{"comment": comment, "scopes": []string{"usage:write"}, "tags": tags, "time_to_live_in_seconds": 60}
	}
	tests := []struct {
		name    string
		body    map[string]any
		status  int
		message string
	}{
		{"tag of 128 bytes", spec("c", strings.Repeat("t", 128)), http.StatusOK, ""},
		{"tag of 129 bytes", spec("c", "ok", strings.Repeat("t", 129)), http.StatusBadRequest, "tags[1] is 129 bytes long; Deepgram limits tags to 128 characters"},
		{"tag of 43 three-byte runes", spec("c", strings.Repeat("日", 43)), http.StatusBadRequest, "129 bytes"},
		{"comment of 256 bytes", spec(strings.Repeat("c", keystest.MaxCommentLen)), http.StatusOK, ""},
		{"comment of 257 bytes", spec(strings.Repeat("c", keystest.MaxCommentLen+1)), http.StatusBadRequest, "comment is 257 bytes long"},
	}
	for _, tt := range tests {
		status, msg := create(tt.body)
		assert.Equal(t, tt.status, status, tt.name)
		assert.Contains(t, msg, tt.message, tt.name)
	}
	assert.Len(t, srv.LiveKeys(), 3, "the admin key and the two accepted")
}
