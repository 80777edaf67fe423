package keys

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/dglease/dglease/internal/dgday"
)

// UsageQuery selects the usage [Client.Usage] summarises. The zero value
// asks for the whole project over Deepgram's default range.
//
// Deepgram keeps usage by UTC day and takes the range as dates
// (YYYY-MM-DD): only the UTC date of Start and End is sent, and both days
// are included. A query from 14:00 to 15:00 covers that whole day.
type UsageQuery struct {
	// Start is the first day counted. Zero: Deepgram's default (the
	// project's first request).
	Start time.Time
	// End is the last day counted, not before Start's day. Zero:
	// Deepgram's default (today).
	End time.Time
	// Tag keeps only requests that carry this tag; Deepgram applies a
	// key's tags to every request made with it. At most MaxTagLen bytes.
	// Empty: every request.
	Tag string
	// Accessor keeps only requests made with this API key ID. Empty:
	// every request.
	Accessor string
}

// Usage is Deepgram's summary of a project's usage over a range of days,
// as [Client.Usage] returns it.
type Usage struct {
	// Start and End are the first and last day the summary covers, at
	// 00:00 UTC; zero when Deepgram's answer names none.
	Start, End time.Time
	// Resolution is the length of each period, as Deepgram names it
	// (e.g. {Units: "day", Amount: 1}).
	Resolution UsageResolution
	// Periods are the periods Deepgram lists (keys/keystest lists those
	// with usage only), in its order.
	Periods []UsagePeriod
}

// UsageResolution is the length of a [UsagePeriod]: Amount Units.
type UsageResolution struct {
	Units  string
	Amount int
}

// UsagePeriod is the usage of one period (a UTC day).
type UsagePeriod struct {
	// Start and End are the period's first and last day, at 00:00 UTC.
	Start, End time.Time
	// Hours is the audio processed, in hours ("hours").
	Hours float64
	// TotalHours is Deepgram's "total_hours": the audio plus any other
	// processing it bills in hours.
	TotalHours float64
	// Requests counts the requests (a stream is one request).
	Requests int
}

// Audio returns p.Hours as a duration; see [Usage.Audio].
func (p UsagePeriod) Audio() time.Duration { return hoursToDuration(p.Hours) }

// Audio returns the audio of every period, rounded to the millisecond
// (Deepgram's hours are fractions that float arithmetic would otherwise
// show as 1.9999999s), and saturating at the longest time.Duration (about
// 292 years of audio).
func (u *Usage) Audio() time.Duration {
	h := 0.0
	for _, p := range u.Periods {
		h += p.Hours
	}
	return hoursToDuration(h)
}

// Requests returns the requests of every period.
func (u *Usage) Requests() int {
	n := 0
	for _, p := range u.Periods {
		n += p.Requests
	}
	return n
}

// usageJSON is the answer of GET /v1/projects/{id}/usage. The Go SDK's
// manage.GetUsage decodes the same shape (interfaces.UsageResult).
type usageJSON struct {
	Start      string `json:"start"`
	End        string `json:"end"`
	Resolution struct {
		Units  string  `json:"units"`
		Amount float64 `json:"amount"`
	} `json:"resolution"`
	Results []struct {
		Start      string  `json:"start"`
		End        string  `json:"end"`
		Hours      float64 `json:"hours"`
		TotalHours float64 `json:"total_hours"`
		Requests   float64 `json:"requests"`
	} `json:"results"`
}

// Usage summarises the project's usage (GET
// /v1/projects/{project}/usage): the audio processed and the requests
// made, by UTC day, over q's range, optionally only for the requests
// carrying q.Tag or made with the key q.Accessor. The calling key needs
// usage:read (a member key has it; a usage:write key does not: 403,
// [ErrForbidden]).
//
// Deepgram's figures lag behind the service by an undocumented delay: a
// stream that has just ended may not be counted yet.
//
// The query is checked before any network call. Deepgram's current API
// reference marks this endpoint deprecated in favour of
// /usage/breakdown, which takes the same filters; the official Go SDK
// (v3.6.0) calls this one, and its answer needs no grouping.
func (c *Client) Usage(ctx context.Context, q UsageQuery) (*Usage, error) {
	const op = "get usage"
	query, err := checkUsageQuery(q)
	if err != nil {
		return nil, err
	}
	project, err := c.Project(ctx)
	if err != nil {
		return nil, err
	}
	var out usageJSON
	if err := c.call(ctx, op, http.MethodGet, "v1/projects/%s/usage", query, nil, &out, project); err != nil {
		return nil, err
	}
	u, err := out.toUsage(c.scrub)
	if err != nil {
		return nil, fmt.Errorf("keys: %s: deepgram answered success with an unusable %s", op, err)
	}
	return u, nil
}

// checkUsageQuery validates q and returns its query parameters.
func checkUsageQuery(q UsageQuery) (map[string][]string, error) {
	query := map[string][]string{}
	if !q.Start.IsZero() {
		query["start"] = []string{q.Start.UTC().Format(dgday.Format)}
	}
	if !q.End.IsZero() {
		query["end"] = []string{q.End.UTC().Format(dgday.Format)}
	}
	if !q.Start.IsZero() && !q.End.IsZero() && dgday.Of(q.End).Before(dgday.Of(q.Start)) {
		return nil, fmt.Errorf("keys: usage query ends on %s, before it starts (%s); swap Start and End",
			query["end"][0], query["start"][0])
	}
	if q.Tag != "" {
		if err := checkTag("usage query tag", q.Tag); err != nil {
			return nil, err
		}
		query["tag"] = []string{q.Tag}
	}
	if q.Accessor != "" {
		if err := checkID("usage query accessor (an API key ID)", q.Accessor); err != nil {
			return nil, err
		}
		query["accessor"] = []string{q.Accessor}
	}
	return query, nil
}

// toUsage converts u. Its error, without the "keys: " prefix, names the
// field that cannot be used and quotes the value passed through scrub
// first: the answer could echo anything, the API key included, and a
// key cut short by the quote would no longer be found.
func (u usageJSON) toUsage(scrub func(string) string) (*Usage, error) {
	amount, ok := count(u.Resolution.Amount)
	if !ok {
		return nil, fmt.Errorf("resolution.amount: %v is not a count", u.Resolution.Amount)
	}
	out := &Usage{Resolution: UsageResolution{Units: u.Resolution.Units, Amount: amount}}
	var err error
	if out.Start, err = parseUsageDate(u.Start, scrub); err != nil {
		return nil, fmt.Errorf("start: %w", err)
	}
	if out.End, err = parseUsageDate(u.End, scrub); err != nil {
		return nil, fmt.Errorf("end: %w", err)
	}
	for i, r := range u.Results {
		p := UsagePeriod{}
		if p.Start, err = parseUsageDate(r.Start, scrub); err != nil {
			return nil, fmt.Errorf("results[%d].start: %w", i, err)
		}
		if p.End, err = parseUsageDate(r.End, scrub); err != nil {
			return nil, fmt.Errorf("results[%d].end: %w", i, err)
		}
		if r.Hours < 0 || r.TotalHours < 0 {
			return nil, fmt.Errorf("results[%d]: negative hours (%v, total %v)", i, r.Hours, r.TotalHours)
		}
		p.Hours, p.TotalHours = r.Hours, r.TotalHours
		if p.Requests, ok = count(r.Requests); !ok {
			return nil, fmt.Errorf("results[%d].requests: %v is not a count", i, r.Requests)
		}
		out.Periods = append(out.Periods, p)
	}
	return out, nil
}

// count is v, a JSON number, as a count: a whole number from 0 to
// math.MaxInt32.
func count(v float64) (int, bool) {
	if v < 0 || v > math.MaxInt32 || v != math.Trunc(v) {
		return 0, false
	}
	return int(v), true
}

// parseUsageDate reads a usage date: YYYY-MM-DD as documented, or an RFC
// 3339 time as older answers carried, taken as its UTC day. "" is the zero
// time. Its error quotes s through scrub.
func parseUsageDate(s string, scrub func(string) string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(dgday.Format, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return dgday.Of(t), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a date (YYYY-MM-DD)", cleanScrubbed(s, 64, scrub))
}

// hoursToDuration converts fractional hours to a duration rounded to the
// millisecond, saturating at the longest time.Duration; h must not be
// negative.
func hoursToDuration(h float64) time.Duration {
	const maxMillis = math.MaxInt64 / int64(time.Millisecond)
	ms := math.Round(h * float64(time.Hour/time.Millisecond))
	if !(ms < float64(maxMillis)) { // NaN too
		return time.Duration(maxMillis) * time.Millisecond
	}
	return time.Duration(ms) * time.Millisecond
}
