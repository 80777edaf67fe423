package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/dglease/dglease/keys"
	"github.com/dglease/dglease/lease"
)

// usageTimeout bounds the usage call behind GET /api/usage.
const usageTimeout = 10 * time.Second

// maxUsageDays bounds the days GET /api/usage?from= may cover.
const maxUsageDays = 31

// dayFormat is how the usage API and this one write days.
const dayFormat = "2006-01-02"

// usage is the answer to GET /api/usage: how much audio the visitor
// streamed from a day to today, as Deepgram reports it.
type usage struct {
	// From and To are the first and last UTC day counted, YYYY-MM-DD:
	// Deepgram keeps usage by day.
	From string `json:"from"`
	To   string `json:"to"`
	// Seconds is the audio streamed with the visitor's keys over those
	// days, to the millisecond.
	Seconds float64 `json:"seconds"`
	// Streams counts the requests made with them: each stream is one.
	Streams int `json:"streams"`
	// Attributable is false for grant tokens, which carry no tags:
	// Deepgram cannot tell whose stream it was.
	Attributable bool `json:"attributable"`
	// Source names who counted: the backend's name.
	Source string `json:"source"`
}

// handleUsage answers GET /api/usage[?from=YYYY-MM-DD] for the visitor:
// the audio streamed from that day (default today, UTC) to today, read
// back from Deepgram by the visitor's tag (lease.StreamedAudio). The page
// asks before a stream, then again from the same day after it, and shows
// the difference: a stream that crosses midnight is still counted once.
func (s *server) handleUsage(w http.ResponseWriter, r *http.Request) {
	visitor, ok := visitorOf(r)
	if !ok {
		writeJSON(w, http.StatusUnauthorized, apiError{Error: "No session: load the page first."})
		return
	}
	if s.cfg.Usage == nil {
		writeJSON(w, http.StatusNotFound, apiError{Error: "This backend cannot read usage back from " + s.cfg.Backend + "."})
		return
	}
	now := time.Now()
	today := now.UTC().Truncate(24 * time.Hour)
	from := today
	if v := r.URL.Query().Get("from"); v != "" {
		d, err := time.Parse(dayFormat, v)
		if err != nil || d.After(today) || today.Sub(d) > maxUsageDays*24*time.Hour {
			writeJSON(w, http.StatusBadRequest, apiError{Error: fmt.Sprintf("from must be a day (YYYY-MM-DD) within the last %d days.", maxUsageDays)})
			return
		}
		from = d
	}
	ctx, cancel := context.WithTimeout(r.Context(), usageTimeout)
	defer cancel()
	got, err := lease.StreamedAudio(ctx, s.cfg.Usage, visitor, from, now)
	if err != nil {
		// The page gets a generic message, the log the reason; neither
		// holds a secret.
		s.cfg.Logger.Warn("could not read usage", "user", visitor, "err", err)
		msg := "Could not read usage from " + s.cfg.Backend + "; try again later."
		if errors.Is(err, keys.ErrForbidden) {
			msg = "Could not read usage from " + s.cfg.Backend + ": the backend's API key needs the usage:read scope."
		}
		writeJSON(w, http.StatusBadGateway, apiError{Error: msg})
		return
	}
	writeJSON(w, http.StatusOK, usage{
		From:         got.Start.Format(dayFormat),
		To:           got.End.Format(dayFormat),
		Seconds:      got.Audio.Seconds(),
		Streams:      got.Requests,
		Attributable: !s.cfg.Grant,
		Source:       s.cfg.Backend,
	})
}
