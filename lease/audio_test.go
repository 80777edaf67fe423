package lease_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"strings"
	"testing"
	"time"

	manageapi "github.com/deepgram/deepgram-go-sdk/v3/pkg/api/manage/v1"
	managetypes "github.com/deepgram/deepgram-go-sdk/v3/pkg/api/manage/v1/interfaces"
	"github.com/deepgram/deepgram-go-sdk/v3/pkg/client/interfaces"
	manageclient "github.com/deepgram/deepgram-go-sdk/v3/pkg/client/manage"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/internal/dgday"
	"github.com/dglease/dglease/internal/testaudio"
	"github.com/dglease/dglease/internal/testenv"
	"github.com/dglease/dglease/keys"
	"github.com/dglease/dglease/keys/keystest"
	"github.com/dglease/dglease/lease"
)

// awayFromMidnight moves srv's clock past the next UTC midnight if that is
// less than a minute away, so that a test's streams and its usage queries
// fall on one UTC day whatever the time it runs at.
func awayFromMidnight(srv *keystest.Server) {
	now := srv.Now()
	if left := dgday.Of(now).Add(24 * time.Hour).Sub(now); left < time.Minute {
		srv.Advance(left)
	}
}

// streamLeased leases a key for user, streams audio with it as a browser
// does (the lease's subprotocol list), and releases the lease.
func streamLeased(t *testing.T, srv *keystest.Server, m *lease.Manager, user string, audio []byte) {
	t.Helper()
	l, err := m.Acquire(context.Background(), user)
	require.NoError(t, err)
	defer l.Release()
	_, err = testaudio.Stream(srv.ListenURL(), l.Subprotocol(), audio)
	require.NoError(t, err, "user %q", user)
}

// TestStreamedAudioPerUser is attribution end to end: three users, one of
// them with an ID whose readable tag would be over Deepgram's 128
// characters, stream different amounts of PCM through leased keys;
// StreamedAudio reads each user's seconds back from the fake, to the
// millisecond, and the SDK's own manage client reads the same figures.
func TestStreamedAudioPerUser(t *testing.T) {
	srv := keystest.NewServer(t)
	awayFromMidnight(srv)
	m := newManager(t, srv.Client())
	users := []struct {
		name    string
		streams []time.Duration
	}{
		{"alice", []time.Duration{1500 * time.Millisecond, 250 * time.Millisecond}},
		{"Jürgen Müller <jm@example.de>", []time.Duration{3 * time.Second}},
		{strings.Repeat("日", 13), []time.Duration{125 * time.Millisecond, 2 * time.Second, time.Second}}, // a 130-character readable tag
	}
	for _, u := range users {
		for _, d := range u.streams {
			streamLeased(t, srv, m, u.name, testaudio.Silence(d))
		}
	}
	require.NoError(t, m.Flush(context.Background()))
	for _, k := range srv.Keys()[1:] {
		assert.Equal(t, keystest.StatusDeleted, k.Status, "released keys are deleted; their streams still count")
	}

	mc := manageclient.New(srv.AdminKey(), &interfaces.ClientOptions{Host: srv.URL})
	require.NotNil(t, mc)
	defer mc.HTTPClient.CloseIdleConnections()
	sdk := manageapi.New(mc)
	now := srv.Now()
	for _, u := range users {
		var want time.Duration
		for _, d := range u.streams {
			want += d
		}
		got, err := lease.StreamedAudio(context.Background(), srv.Client(), u.name, now.Add(-time.Minute), now)
		require.NoError(t, err)
		tag, err := lease.UserTag(u.name)
		require.NoError(t, err)
		day := dgday.Of(now)
		assert.Equal(t, lease.AudioUsage{User: u.name, Tag: tag, Start: day, End: day, Audio: want, Requests: len(u.streams)}, got)

		ctx := context.WithValue(context.Background(), interfaces.ParametersContext{}, map[string][]string{"tag": {tag}})
		res, err := sdk.GetUsage(ctx, srv.ProjectID(), &managetypes.UsageRequest{})
		require.NoError(t, err)
		require.Len(t, res.Results, 1, "one day of usage")
		assert.InDelta(t, want.Seconds(), res.Results[0].Hours*3600, 1e-9, "the SDK reads %q's figure", u.name)
		assert.Equal(t, len(u.streams), res.Results[0].Requests)
	}
	assert.Len(t, srv.Streams(), 6)

	nobody, err := lease.StreamedAudio(context.Background(), srv.Client(), "nobody", now, now)
	require.NoError(t, err)
	assert.Zero(t, nobody.Audio)
	assert.Zero(t, nobody.Requests)
}

// TestStreamedAudioNeedsUsageRead: a reader whose key lacks usage:read
// gets Deepgram's 403, with what to do.
func TestStreamedAudioNeedsUsageRead(t *testing.T) {
	srv := fake(t)
	k := srv.AddKey(keys.Spec{Scopes: []string{"usage:write"}})
	_, err := lease.StreamedAudio(context.Background(), srv.ClientFor(k.Secret, srv.ProjectID()), "alice", time.Now(), time.Now())
	require.ErrorIs(t, err, keys.ErrForbidden)
	require.True(t, testenv.NoSecret(t, "StreamedAudio's error", err.Error(), k.Secret)) // before anything prints the error
	assert.Contains(t, err.Error(), `lease: streamed audio of user "alice": the usage reader's key needs usage:read`)
}

// countingReader counts calls; it must never be reached by bad input.
type countingReader struct {
	calls int
	q     keys.UsageQuery
	u     *keys.Usage
	err   error
}

func (r *countingReader) Usage(_ context.Context, q keys.UsageQuery) (*keys.Usage, error) {
	r.calls++
	r.q = q
	return r.u, r.err
}

func TestStreamedAudioRefusesBadInput(t *testing.T) {
	day := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	var nilClient *keys.Client
	tests := []struct {
		name string
		call func(r lease.UsageReader) error
		want string
	}{
		{"nil context", func(r lease.UsageReader) error {
			//lint:ignore SA1012 the nil context is the point
			_, err := lease.StreamedAudio(nil, r, "alice", day, day) //nolint:staticcheck
			return err
		}, "non-nil context"},
		{"nil reader", func(lease.UsageReader) error {
			_, err := lease.StreamedAudio(context.Background(), nil, "alice", day, day)
			return err
		}, "needs a UsageReader"},
		{"nil *keys.Client", func(lease.UsageReader) error {
			_, err := lease.StreamedAudio(context.Background(), nilClient, "alice", day, day)
			return err
		}, "nil *keys.Client"},
		{"empty user", func(r lease.UsageReader) error {
			_, err := lease.StreamedAudio(context.Background(), r, "", day, day)
			return err
		}, "user must not be empty"},
		{"user not UTF-8", func(r lease.UsageReader) error {
			_, err := lease.StreamedAudio(context.Background(), r, "\xff", day, day)
			return err
		}, "valid UTF-8"},
		{"user too long", func(r lease.UsageReader) error {
			_, err := lease.StreamedAudio(context.Background(), r, strings.Repeat("x", lease.MaxUserLen+1), day, day)
			return err
		}, "at most 128"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &countingReader{}
			err := tt.call(r)
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), "lease: "), err.Error())
			assert.Contains(t, err.Error(), tt.want)
			assert.Zero(t, r.calls)
		})
	}

	// The client's own checks (end before start) come back wrapped.
	srv := fake(t)
	_, err := lease.StreamedAudio(context.Background(), srv.Client(), "alice", day, day.Add(-24*time.Hour))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `lease: streamed audio of user "alice": keys: usage query ends on 2025-05-31`)
	assert.Empty(t, srv.Requests(), "checked before any call")
}

// TestStreamedAudioAsksForTheUsersTag: the query is the user's tag over
// the days asked for; the answer's days and figures come back as they are.
func TestStreamedAudioAsksForTheUsersTag(t *testing.T) {
	start, end := time.Date(2025, 6, 1, 23, 0, 0, 0, time.UTC), time.Date(2025, 6, 3, 1, 0, 0, 0, time.UTC)
	r := &countingReader{u: &keys.Usage{
		Start: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC), End: time.Date(2025, 6, 3, 0, 0, 0, 0, time.UTC),
		Periods: []keys.UsagePeriod{{Hours: 0.5, Requests: 3}, {Hours: 0.25, Requests: 1}},
	}}
	user := strings.Repeat("🎤", 32)
	got, err := lease.StreamedAudio(context.Background(), r, user, start, end)
	require.NoError(t, err)
	tag, _ := lease.UserTag(user)
	assert.Equal(t, keys.UsageQuery{Start: start, End: end, Tag: tag}, r.q)
	assert.Equal(t, lease.AudioUsage{User: user, Tag: tag, Start: r.u.Start, End: r.u.End, Audio: 45 * time.Minute, Requests: 4}, got)

	r = &countingReader{u: &keys.Usage{}} // an answer that names no days
	got, err = lease.StreamedAudio(context.Background(), r, "alice", start, end)
	require.NoError(t, err)
	assert.Equal(t, time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC), got.Start, "the days asked for")
	assert.Equal(t, time.Date(2025, 6, 3, 0, 0, 0, 0, time.UTC), got.End)

	r = &countingReader{err: errors.New("boom")}
	_, err = lease.StreamedAudio(context.Background(), r, "alice", start, end)
	assert.EqualError(t, err, `lease: streamed audio of user "alice": boom`)
	r = &countingReader{}
	_, err = lease.StreamedAudio(context.Background(), r, "alice", start, end)
	assert.ErrorContains(t, err, "returned no usage")
}

// Every key leased to a user carries the user's tag, by which Deepgram
// counts the audio streamed with it: one call reads it back.
func ExampleStreamedAudio() {
	srv, err := keystest.Start() // listening: streams need a socket
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	leases, err := lease.New(srv.Client())
	if err != nil {
		log.Fatal(err)
	}
	defer leases.Close(context.Background())

	start := time.Now()
	l, err := leases.Acquire(context.Background(), "user-42")
	if err != nil {
		log.Fatal(err)
	}
	// A browser would stream its microphone; here, 1.5 s of raw audio.
	if _, err := testaudio.Stream(srv.ListenURL(), l.Subprotocol(), testaudio.Silence(1500*time.Millisecond)); err != nil {
		log.Fatal(err)
	}
	l.Release()

	// Any client whose key has usage:read; the fake's admin key has it.
	got, err := lease.StreamedAudio(context.Background(), srv.Client(), "user-42", start, time.Now())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s streamed %s in %d stream(s), counted under the tag %s\n", got.User, got.Audio, got.Requests, got.Tag)
	// Output:
	// user-42 streamed 1.5s in 1 stream(s), counted under the tag dglease:user=user-42
}
