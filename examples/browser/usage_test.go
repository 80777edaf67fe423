package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/internal/testaudio"
	"github.com/dglease/dglease/internal/testenv"
	"github.com/dglease/dglease/keys"
	"github.com/dglease/dglease/keys/keystest"
	"github.com/dglease/dglease/lease"
)

// TestUsageAfterAStream: a visitor streams 1.5 s of audio with the
// credential the backend issued; GET /api/usage reads it back from the
// fake, by the visitor's tag, and another visitor's usage stays zero.
func TestUsageAfterAStream(t *testing.T) {
	fake := keystest.NewServer(t) // listening: the stream needs a socket
	h := newHarnessOn(t, fake, func(c *config) { c.ListenURL = fake.ListenURL() })
	alice, bob := h.visitor(), h.visitor()

	before := alice.usage("")
	assert.Zero(t, before.Seconds)
	assert.Zero(t, before.Streams)
	assert.True(t, before.Attributable)
	assert.Equal(t, "the fake", before.Source)
	assert.Equal(t, before.From, before.To, "today")

	c := alice.credential()
	audio := bytes.Repeat([]byte{0, 0}, 24000) // 1.5 s of linear16 at 16 kHz
	_, err := testaudio.Stream(fake.ListenURL(), c.Subprotocol, audio)
	require.NoError(t, err)
	require.Equal(t, http.StatusNoContent, alice.release(c.Release))

	// From the day of the first reading, as the page asks: a stream
	// across midnight still counts once.
	after := alice.usage(before.From)
	assert.Equal(t, 1.5, after.Seconds)
	assert.Equal(t, 1, after.Streams)
	assert.Equal(t, before.From, after.From)

	other := bob.usage("")
	assert.Zero(t, other.Seconds, "another visitor's audio is not bob's")
	assert.Zero(t, other.Streams)
}

// stubUsage is a lease.UsageReader with a fixed answer.
type stubUsage struct {
	u   *keys.Usage
	err error
	q   keys.UsageQuery
}

func (s *stubUsage) Usage(_ context.Context, q keys.UsageQuery) (*keys.Usage, error) {
	s.q = q
	return s.u, s.err
}

// TestUsageAnswers: the answer is the visitor's StreamedAudio over the
// days asked for; failures are 502s that name no secret.
func TestUsageAnswers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) { // the bubble's clock: 2000-01-01
		stub := &stubUsage{u: &keys.Usage{
			Start: time.Date(1999, 12, 30, 0, 0, 0, 0, time.UTC), End: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
			Periods: []keys.UsagePeriod{{Hours: 0.001, Requests: 2}, {Hours: 0.0005, Requests: 1}},
		}}
		h := newHarness(t, func(c *config) { c.Usage = stub })
		b := h.visitor()

		got := b.usage("1999-12-30")
		assert.Equal(t, usage{From: "1999-12-30", To: "2000-01-01", Seconds: 5.4, Streams: 3, Attributable: true, Source: "the fake"}, got)
		tag, err := lease.UserTag(visitorID(b.cookie.Value))
		require.NoError(t, err)
		assert.Equal(t, tag, stub.q.Tag, "the visitor's tag")
		assert.Equal(t, time.Date(1999, 12, 30, 0, 0, 0, 0, time.UTC), stub.q.Start)
		assert.Equal(t, time.Now(), stub.q.End)

		time.Sleep(13 * time.Hour)
		b.usage("")
		assert.Equal(t, time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), stub.q.Start, "today (UTC) by default")

		for _, from := range []string{"yesterday", "2000-01-02", "1999-11-30", "1999-12-01T00:00:00Z"} {
			res := b.do("GET", "/api/usage?from="+from, nil)
			assert.Equal(t, http.StatusBadRequest, res.StatusCode, from)
		}
		res := (&browser{h: h}).do("GET", "/api/usage", nil)
		assert.Equal(t, http.StatusUnauthorized, res.StatusCode, "no session")

		stub.err = &keys.APIError{Op: "get usage", StatusCode: http.StatusForbidden, Message: "no usage:read"}
		res = b.do("GET", "/api/usage", nil)
		require.Equal(t, http.StatusBadGateway, res.StatusCode)
		body := readAll(res)
		assert.Contains(t, body, "needs the usage:read scope")
		testenv.NoSecret(t, "the 502 answer", body, h.fake.AdminKey())

		stub.err = errors.New("connection reset")
		res = b.do("GET", "/api/usage", nil)
		require.Equal(t, http.StatusBadGateway, res.StatusCode)
		assert.Contains(t, readAll(res), "try again later")
		assert.Equal(t, 2, strings.Count(h.logs.String(), `msg="could not read usage"`), "each failure logged")
	})
}

// TestUsageOfGrantTokens: grant tokens carry no tags; the page is told
// the usage cannot be attributed.
func TestUsageOfGrantTokens(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(c *config) { c.Grant = true })
		assert.False(t, h.visitor().usage("").Attributable)
	})
}

// TestUsageUnavailable: without a usage reader (Keys cannot read usage and
// none is configured) the endpoint says so, and so does /api/about.
func TestUsageUnavailable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(c *config) {
			c.Keys = struct{ lease.KeyService }{c.Keys} // hides the client's Usage method
			c.Usage = nil
		})
		b := h.visitor()
		res := b.do("GET", "/api/usage", nil)
		assert.Equal(t, http.StatusNotFound, res.StatusCode)
		var got about
		decode(t, b.do("GET", "/api/about", nil), &got)
		assert.False(t, got.Usage)
		assert.Empty(t, h.fake.Requests(), "no call was made")
	})
}

// TestUsageReadThroughKeys: without Usage, the backend reads usage through
// Keys when it can (a *keys.Client can), as main's wiring relies on.
func TestUsageReadThroughKeys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(c *config) { c.Usage = nil })
		b := h.visitor()
		var got about
		decode(t, b.do("GET", "/api/about", nil), &got)
		assert.True(t, got.Usage)
		assert.Equal(t, usage{From: "2000-01-01", To: "2000-01-01", Attributable: true, Source: "the fake"}, b.usage(""))
		reqs := h.fake.Requests()
		require.NotEmpty(t, reqs)
		assert.Equal(t, keystest.OpUsage, reqs[len(reqs)-1].Op)
	})
}
