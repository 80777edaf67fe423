package keystest

import (
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/dglease/dglease/internal/dgday"
	"github.com/dglease/dglease/internal/fakelisten"
)

// Stream is one /v1/listen stream as the fake recorded it when it ended,
// for assertions: a snapshot the caller owns.
type Stream struct {
	// RequestID is the stream's request ID.
	RequestID string
	// Accessor is the ID of the API key the stream was opened with or, for
	// a grant token, of the key that minted the token.
	Accessor string
	// Tags are the tags the stream counts under: the key's tags (none for
	// a grant token), then the tag parameters of its query that the key
	// does not carry, as Deepgram applies both.
	Tags []string
	// Opened and Ended are when the stream opened and ended, on the
	// server's clock ([Server.Now]).
	Opened, Ended time.Time
	// Bytes counts the audio bytes received.
	Bytes int64
	// Audio is the audio the stream carried: exact from Bytes for raw
	// audio of a fixed sample size (encoding linear16, linear32, mulaw or
	// alaw, with sample_rate and channels, default 16000 and 1); the wall
	// time from the opening to the last audio frame otherwise (no
	// encoding: containerised audio; or a compressed encoding).
	Audio time.Duration
}

// Streams returns the /v1/listen streams that have ended, in the order
// they ended. A stream ends (and is counted in usage) on CloseStream,
// before its Metadata message is sent, or else when its connection ends.
func (s *Server) Streams() []Stream {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Clone(s.ended)
	for i := range out {
		out[i].Tags = slices.Clone(out[i].Tags)
	}
	return out
}

// recordStream is the fake's [fakelisten.WithRecorder]: it books the
// stream against the key (or grant token) checkStreamCredential named.
func (s *Server) recordStream(sess fakelisten.Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stream{RequestID: sess.RequestID, Opened: sess.Opened, Ended: sess.Ended, Bytes: sess.Bytes, Audio: sess.Audio}
	if k := s.byID[sess.Account]; k != nil {
		st.Accessor = k.id
		st.Tags = slices.Clone(k.tags)
	} else {
		st.Accessor = s.grants[sess.Account]
	}
	for _, t := range sess.Tags {
		if !slices.Contains(st.Tags, t) {
			st.Tags = append(st.Tags, t)
		}
	}
	s.ended = append(s.ended, st)
}

// usageFilters are the query parameters GET .../usage takes; any other is
// refused, so that a test never gets a figure filtered less than it asked.
var usageFilters = map[string]bool{"start": true, "end": true, "tag": true, "accessor": true, "method": true, "endpoint": true}

// Wire shape of GET /v1/projects/{id}/usage (UsageV1Response in
// Deepgram's API reference; the Go SDK's interfaces.UsageResult).
type (
	usageAnswer struct {
		Start      string          `json:"start"`
		End        string          `json:"end"`
		Resolution usageResolution `json:"resolution"`
		Results    []usageResult   `json:"results"`
	}
	usageResolution struct {
		Units  string `json:"units"`
		Amount int    `json:"amount"`
	}
	usageResult struct {
		Start      string  `json:"start"`
		End        string  `json:"end"`
		Hours      float64 `json:"hours"`
		TotalHours float64 `json:"total_hours"`
		Requests   int     `json:"requests"`
	}
)

// usage answers GET /v1/projects/{id}/usage from the recorded streams.
// s.mu is held.
func (s *Server) usage(c *call) answer {
	bad := func(msg string) answer { return c.fail(http.StatusBadRequest, "BAD_REQUEST", msg) }
	q := c.r.URL.Query()
	for name := range q {
		if !usageFilters[name] {
			return bad("the fake does not filter usage by " + name + "; it takes start, end, tag, accessor, method and endpoint")
		}
	}
	for _, name := range []string{"start", "end", "accessor", "method", "endpoint"} {
		if len(q[name]) > 1 {
			return bad(name + " must be given at most once")
		}
	}
	today := dgday.Of(s.now())
	var start, end time.Time
	var err error
	if v := q.Get("start"); v != "" {
		if start, err = time.Parse(dgday.Format, v); err != nil {
			return bad("start must be a date, YYYY-MM-DD")
		}
	}
	if v := q.Get("end"); v != "" {
		if end, err = time.Parse(dgday.Format, v); err != nil {
			return bad("end must be a date, YYYY-MM-DD")
		}
	} else {
		end = today
	}
	tags, accessor := q["tag"], q.Get("accessor")
	method, endpoint := q.Get("method"), q.Get("endpoint")

	if !start.IsZero() && end.Before(start) { // a defaulted start never is
		return bad("end is before start")
	}
	type dayUsage struct {
		audio    time.Duration
		requests int
	}
	byDay := map[time.Time]*dayUsage{}
	first := time.Time{}
	for _, st := range s.ended {
		day := dgday.Of(st.Opened)
		if first.IsZero() || day.Before(first) {
			first = day
		}
		if (!start.IsZero() && day.Before(start)) || day.After(end) ||
			(accessor != "" && st.Accessor != accessor) ||
			(method != "" && method != "streaming") || (endpoint != "" && endpoint != "listen") {
			continue
		}
		if !containsAll(st.Tags, tags) {
			continue
		}
		d := byDay[day]
		if d == nil {
			d = &dayUsage{}
			byDay[day] = d
		}
		d.audio += st.Audio
		d.requests++
	}
	if start.IsZero() { // Deepgram's default: the first request
		start = end
		if !first.IsZero() && first.Before(end) {
			start = first
		}
	}
	out := usageAnswer{
		Start:      start.Format(dgday.Format),
		End:        end.Format(dgday.Format),
		Resolution: usageResolution{Units: "day", Amount: 1},
		Results:    []usageResult{},
	}
	for _, day := range slices.SortedFunc(maps.Keys(byDay), func(a, b time.Time) int { return a.Compare(b) }) {
		d := byDay[day]
		h := d.audio.Hours()
		out.Results = append(out.Results, usageResult{
			Start: day.Format(dgday.Format), End: day.Format(dgday.Format),
			Hours: h, TotalHours: h, Requests: d.requests,
		})
	}
	return answer{status: http.StatusOK, body: out}
}

// containsAll reports whether have holds every one of want.
func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}
