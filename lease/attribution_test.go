package lease_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/keys"
	"github.com/dglease/dglease/keys/keystest"
	"github.com/dglease/dglease/lease"
)

// shapes are user IDs of every shape Acquire accepts, at the lengths that
// matter: each of them is over Deepgram's tag limit once escaped, but the
// first.
var shapes = []string{
	"alice",
	strings.Repeat("x", lease.MaxUserLen),       // 141-character readable tag
	strings.Repeat("é", lease.MaxUserLen/2),     // 397
	strings.Repeat("日", 13),                     // 130: the example
	strings.Repeat("日", lease.MaxUserLen/3),     // 42 three-byte runes
	strings.Repeat("🎤", lease.MaxUserLen/4),     // 32 four-byte runes
	strings.Repeat("\x00\t\n\x7f", 32),          // C0 controls and DEL
	strings.Repeat("\u0085\u009b", 32),          // C1 controls
	"mixed é日🎤\x01 " + strings.Repeat("z", 100), // all of them
}

// TestAcquireTagsEveryUserShape: on a fake that refuses what Deepgram
// refuses (a tag over 128 characters, a comment over 256), Acquire works
// for user IDs of every shape; each key carries its user's tag
// (UserTag) and a marker that names its user; Sweep recognises every one
// of those markers once its key has expired, and leaves a live key alone.
func TestAcquireTagsEveryUserShape(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		m := newManager(t, srv.Client(), lease.WithTTL(10*time.Second))
		// Deletes fail and are not retried (403): the keys stay, for Sweep.
		srv.Fail(keystest.OpDelete, keystest.Fault{Status: http.StatusForbidden, Times: -1})
		var held []*lease.Lease
		for _, user := range shapes {
			l, err := m.Acquire(context.Background(), user)
			require.NoError(t, err, "user %q", user)
			held = append(held, l)
			k := state(t, srv, l.KeyID()).Key
			for _, tag := range k.Tags {
				assert.LessOrEqual(t, len(tag), keys.MaxTagLen, "user %q: tag %q", user, tag)
			}
			tag, err := lease.UserTag(user)
			require.NoError(t, err)
			assert.Contains(t, k.Tags, tag, "user %q", user)
			mk, err := lease.ParseMarker(k.Comment, k.Tags)
			require.NoError(t, err, "user %q", user)
			assert.Equal(t, user, mk.User)
			assert.Equal(t, l.ID(), mk.Lease)
		}
		for _, l := range held {
			l.Release()
		}
		time.Sleep(time.Minute) // every key past its expiry
		live, err := m.Acquire(context.Background(), "bob")
		require.NoError(t, err)
		defer live.Release()
		srv.ClearFaults(keystest.OpDelete)

		res, err := lease.Sweep(context.Background(), srv.Client(), lease.SweepOptions{})
		require.NoError(t, err)
		assert.Equal(t, len(shapes), res.Deleted, "every expired marked key, whatever its user")
		var swept []string
		for _, k := range res.Expired {
			mk, err := lease.ParseMarker(k.Comment, k.Tags)
			require.NoError(t, err)
			swept = append(swept, mk.User)
		}
		assert.ElementsMatch(t, shapes, swept)
		assert.Equal(t, keystest.StatusActive, state(t, srv, live.KeyID()).Status)
	})
}

// TestMarkerCannotPassForAnotherUser: a user ID written to look like another
// user's marker fields or tag gets a marker and a tag of its own: another
// user's lease stays theirs (Owner), releasing one's own ends only it, and
// usage booked through one's own keys is never counted as the other's.
func TestMarkerCannotPassForAnotherUser(t *testing.T) {
	bobTag, err := lease.UserTag("bob")
	require.NoError(t, err)
	malloryIDs := []string{
		bobTag,                  // bob's tag as a user ID
		"bob user=bob",          // a comment field
		"x user=bob",            //
		"bob\x00",               // bob and a NUL
		"bob%20",                // an escape
		" user64=Ym9i",          // the compact field, "bob" in base64
		"dglease:user-sha256=0", // the digest prefix
		"BOB",
	}
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		m := newManager(t, srv.Client())
		bob, err := m.Acquire(context.Background(), "bob")
		require.NoError(t, err)
		defer bob.Release()
		bobKey := state(t, srv, bob.KeyID()).Key
		for _, mallory := range malloryIDs {
			l, err := m.Acquire(context.Background(), mallory)
			require.NoError(t, err, "%q", mallory)
			k := state(t, srv, l.KeyID()).Key
			mk, err := lease.ParseMarker(k.Comment, k.Tags)
			require.NoError(t, err)
			assert.Equal(t, mallory, mk.User)
			assert.NotContains(t, k.Tags, bobTag, "%q's key carries bob's tag", mallory)
			assert.NotEqual(t, bobKey.Comment, k.Comment)
			for _, tag := range k.Tags {
				if strings.HasPrefix(tag, "dglease:user") {
					assert.False(t, slices.Contains(bobKey.Tags, tag), "%q shares a user tag with bob", mallory)
				}
			}
			l.Release()
			require.NoError(t, m.Flush(context.Background()))
			owner, ok := m.Owner(bob.ID())
			assert.True(t, ok && owner == "bob", "bob's lease after %q released theirs", mallory)
			assert.Equal(t, keystest.StatusActive, state(t, srv, bob.KeyID()).Status)
		}
	})
}
