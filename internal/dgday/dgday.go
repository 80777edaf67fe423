// Package dgday is the day Deepgram's usage API counts in: a whole UTC
// calendar day, written YYYY-MM-DD. The client (keys), the fake
// (keys/keystest) and lease.StreamedAudio share it, so that they agree on
// which day an instant belongs to.
package dgday

import "time"

// Format is the layout of the usage API's dates, for time.Format and
// time.Parse.
const Format = "2006-01-02"

// Of returns the start (00:00 UTC) of the UTC day t falls in.
func Of(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}
