package lease

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/keys"
	"github.com/dglease/dglease/keys/keystest"
)

func TestMarkerRoundTrip(t *testing.T) {
	for _, user := range []string{
		"alice", "user 42", "ünïcödé 🎤", "a=b c=d", "lease=0123456789abcdef mgr=x",
		"%41", "dglease", "tab\there", "new\nline", strings.Repeat("x", MaxUserLen),
		strings.Repeat("é", 64), strings.Repeat("日", 42), strings.Repeat("🎤", 32), strings.Repeat("\x00", MaxUserLen),
		"user64=x y", "x user64=y",
	} {
		m := Marker{Lease: newID(), Manager: newID(), User: user}
		got, err := ParseMarker(m.comment(), m.tags())
		require.NoError(t, err, user)
		assert.Equal(t, m, got)
		assert.NotContains(t, m.comment(), "\n")
	}
}

// The comment and tags lease wrote before the compact form: the user
// escaped whatever its length. Sweep must still recognise those keys.
func TestParseMarkerOfEarlierVersions(t *testing.T) {
	user := strings.Repeat("é", 64)
	lease, mgr := newID(), newID()
	comment := "dglease lease=" + lease + " mgr=" + mgr + " user=" + encodeUser(user)
	tags := []string{"dglease", "dglease:lease=" + lease, "dglease:mgr=" + mgr, "dglease:user=" + encodeUser(user)[:115]} // a tag cut short
	got, err := ParseMarker(comment, tags)
	require.NoError(t, err)
	assert.Equal(t, Marker{Lease: lease, Manager: mgr, User: user}, got)
}

// The two forms, at the boundary: the readable one while the tag fits
// Deepgram's 128 characters, the compact one beyond.
func TestMarkerForms(t *testing.T) {
	tests := []struct {
		name     string
		user     string
		compact  bool
		tagLen   int
		wantTag  string
		wantUser string // the comment's user field
	}{
		{"short ASCII", "alice", false, 18, "dglease:user=alice", " user=alice"},
		{"115 unreserved bytes", strings.Repeat("a", 115), false, 128, "", ""},
		{"116 unreserved bytes", strings.Repeat("a", 116), true, 84, "", ""},
		{"19 two-byte runes and a byte (115 escaped)", strings.Repeat("é", 19) + "a", false, 128, "", ""},
		{"20 two-byte runes (120 escaped)", strings.Repeat("é", 20), true, 84, "", ""},
		{"39 spaces (117 escaped)", strings.Repeat(" ", 39), true, 84, "", ""},
		{"one four-byte rune", "🎤", false, 25, "dglease:user=%F0%9F%8E%A4", " user=%F0%9F%8E%A4"},
		{"13 three-byte runes, the issue's 130-character tag", strings.Repeat("日", 13), true, 84,
			"dglease:user-sha256=" + sha256hex(strings.Repeat("日", 13)), " user64=" + b64(strings.Repeat("日", 13))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := Marker{Lease: newID(), Manager: newID(), User: tt.user}
			tag := m.tags()[3]
			assert.Len(t, tag, tt.tagLen)
			assert.Equal(t, tt.compact, strings.HasPrefix(tag, "dglease:user-sha256="), "compact tag")
			assert.Equal(t, tt.compact, strings.Contains(m.comment(), " user64="), "compact comment")
			if tt.wantTag != "" {
				assert.Equal(t, tt.wantTag, tag)
				assert.True(t, strings.HasSuffix(m.comment(), tt.wantUser), "comment %q", m.comment())
			}
		})
	}
}

// The longest comment: a user of MaxUserLen bytes in the compact form,
// 171 base64url characters. keystest's comment bound (256) holds it.
func TestMarkerLongestComment(t *testing.T) {
	m := Marker{Lease: newID(), Manager: newID(), User: strings.Repeat("\x00", MaxUserLen)}
	assert.Len(t, m.comment(), 230)
	assert.LessOrEqual(t, len(m.comment()), keystest.MaxCommentLen)
	readable := Marker{Lease: newID(), Manager: newID(), User: strings.Repeat("a", maxReadableUser)}
	assert.Len(t, readable.comment(), 172, "the longest readable comment")
}

func sha256hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// userShapes returns user IDs of every shape Acquire accepts: each class
// of rune (ASCII letters, ASCII punctuation and spaces, C0 controls and
// DEL, 2-, 3- and 4-byte UTF-8, C1 controls) at every length up to
// MaxUserLen bytes, and random mixes of them from a fixed seed.
func userShapes() []string {
	classes := [][]rune{
		[]rune("abcXYZ019._~-"),
		[]rune(" !\"#$%&'()*+,/:;<=>?@[\\]^`{|}"),
		{0, 1, '\t', '\n', '\r', 0x1b, 0x1f, 0x7f},
		[]rune("éßøЖλ"),
		[]rune("日本語€ｱ\u2028\ufeff"),
		[]rune("🎤😀𝄞\U0010ffff"),
		{0x80, 0x85, 0x9b, 0x9f},
	}
	var users []string
	for _, class := range classes {
		for n := 1; ; n++ {
			var b strings.Builder
			for i := range n {
				b.WriteRune(class[i%len(class)])
			}
			if b.Len() > MaxUserLen {
				break
			}
			users = append(users, b.String())
		}
	}
	all := slices.Concat(classes...)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		var b strings.Builder
		for n := 1 + rng.IntN(MaxUserLen); ; {
			r := all[rng.IntN(len(all))]
			if b.Len()+utf8.RuneLen(r) > n {
				break
			}
			b.WriteRune(r)
		}
		if b.Len() > 0 {
			users = append(users, b.String())
		}
	}
	return users
}

// TestMarkerPropertiesForEveryUserShape: for every shape of user ID
// Acquire accepts, every tag is within Deepgram's 128-character limit
// (keystest refuses more), the comment within keystest's bound, the marker
// round-trips, UserTag names the user tag, and no two users share a user
// tag or a comment.
func TestMarkerPropertiesForEveryUserShape(t *testing.T) {
	users := userShapes()
	require.Greater(t, len(users), 2000)
	lease, mgr := newID(), newID()
	byTag, byComment := map[string]string{}, map[string]string{}
	for _, user := range users {
		require.NoError(t, checkUser(user), "%q", user)
		m := Marker{Lease: lease, Manager: mgr, User: user}
		checkMarker(t, m)
		tag, err := UserTag(user)
		require.NoError(t, err)
		if other, ok := byTag[tag]; ok && other != user {
			t.Fatalf("users %q and %q share the tag %q", other, user, tag)
		}
		byTag[tag] = user
		if other, ok := byComment[m.comment()]; ok && other != user {
			t.Fatalf("users %q and %q share the comment %q", other, user, m.comment())
		}
		byComment[m.comment()] = user
	}
}

// checkMarker fails t unless m's comment and tags are within the limits,
// well formed and round-trip through ParseMarker, and its user tag is
// UserTag's.
func checkMarker(t testing.TB, m Marker) {
	t.Helper()
	tags, c := m.tags(), m.comment()
	for _, tag := range tags {
		if tag == "" || len(tag) > keys.MaxTagLen {
			t.Fatalf("user %q: tag %q is %d bytes, over Deepgram's %d", m.User, tag, len(tag), keys.MaxTagLen)
		}
		for i := 0; i < len(tag); i++ {
			if tag[i] <= ' ' || tag[i] >= 0x7f {
				t.Fatalf("user %q: tag %q is not printable ASCII", m.User, tag)
			}
		}
	}
	if len(c) > keystest.MaxCommentLen {
		t.Fatalf("user %q: comment is %d bytes, over keystest's %d", m.User, len(c), keystest.MaxCommentLen)
	}
	if strings.Count(c, " ") != 3 || strings.ContainsFunc(c, func(r rune) bool { return r < ' ' || r >= 0x7f }) {
		t.Fatalf("user %q: comment %q has forged fields or unprintable characters", m.User, c)
	}
	got, err := ParseMarker(c, tags)
	if err != nil {
		t.Fatalf("user %q: %v", m.User, err)
	}
	if got != m {
		t.Fatalf("round trip: got %+v want %+v", got, m)
	}
	if tag, err := UserTag(m.User); err != nil || tag != tags[3] {
		t.Fatalf("user %q: UserTag = %q, %v; the key's tag is %q", m.User, tag, err, tags[3])
	}
}

func TestUserTag(t *testing.T) {
	tag, err := UserTag("alice@example.com")
	require.NoError(t, err)
	assert.Equal(t, "dglease:user=alice%40example.com", tag)
	tag, err = UserTag(strings.Repeat("é", 64))
	require.NoError(t, err)
	// printf 'é%.0s' $(seq 64) | sha256sum
	assert.Equal(t, "dglease:user-sha256=845836d7e680de9961df321148f8cb5e8a7da92aba65f5b05b817c3b58256bd5", tag)

	for _, bad := range []string{"", "\xff", strings.Repeat("x", MaxUserLen+1)} {
		tag, err := UserTag(bad)
		assert.Empty(t, tag)
		require.Error(t, err)
		assert.True(t, strings.HasPrefix(err.Error(), "lease: user "), err.Error())
	}
}

func TestParseMarkerRefuses(t *testing.T) {
	m := Marker{Lease: newID(), Manager: newID(), User: "bob"}
	long := strings.Repeat("é", 64)
	head := "dglease lease=" + m.Lease + " mgr=" + m.Manager
	tests := []struct {
		name    string
		comment string
		tags    []string
	}{
		{"no marker", "my key", m.tags()},
		{"no tags", m.comment(), nil},
		{"tags of another lease", m.comment(), Marker{Lease: newID(), Manager: m.Manager, User: "bob"}.tags()},
		{"extra field", m.comment() + " x=y", m.tags()},
		{"bad lease id", "dglease lease=ZZ mgr=" + m.Manager + " user=bob", m.tags()},
		{"raw space in user", head + " user=b b", m.tags()},
		{"non-canonical escape", head + " user=%62ob", m.tags()},
		{"truncated escape", head + " user=bo%4", m.tags()},
		{"empty user", head + " user=", m.tags()},
		{"no user field", head + " name=bob", m.tags()},
		{"user64 of a user that fits the readable form", head + " user64=" + b64("bob"), m.tags()},
		{"user64 with padding", head + " user64=" + base64.URLEncoding.EncodeToString([]byte(long)), m.tags()},
		{"user64 in the standard alphabet", head + " user64=" + strings.ReplaceAll(b64(long), "w", "+"), m.tags()},
		{"user64 with stray bits", head + " user64=" + b64(long)[:len(b64(long))-1] + "x", m.tags()},
		{"user64 of invalid UTF-8", head + " user64=" + b64(strings.Repeat("\xff", 40)), m.tags()},
		{"user64 over MaxUserLen", head + " user64=" + b64(strings.Repeat("é", 65)), m.tags()},
		{"empty user64", head + " user64=", m.tags()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseMarker(tt.comment, tt.tags)
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), "lease: "), err.Error())
		})
	}
}

func TestCheckUser(t *testing.T) {
	tests := []struct {
		user string
		want string
	}{
		{"", "lease: user must not be empty"},
		{strings.Repeat("x", MaxUserLen+1), "at most 128"},
		{"\xff", "valid UTF-8"},
		{"ok", ""},
	}
	for _, tt := range tests {
		err := checkUser(tt.user)
		if tt.want == "" {
			assert.NoError(t, err)
			continue
		}
		require.Error(t, err)
		assert.Contains(t, err.Error(), tt.want)
	}
}

func TestCheckScope(t *testing.T) {
	for _, bad := range []string{"keys:write", "keys:read", "member", "Admin", "owner", "project:write", "billing:read", "members:write", "usage:*", "", " usage:write"} {
		assert.Error(t, checkScope(bad), bad)
	}
	for _, ok := range []string{"usage:write", "usage:read"} {
		assert.NoError(t, checkScope(ok), ok)
	}
}

func TestBackoffBounds(t *testing.T) {
	for n := 1; n < 40; n++ {
		d := backoff(n)
		ceiling := min(backoffBase<<min(n-1, 20), backoffMax)
		assert.GreaterOrEqual(t, d, ceiling/2, n)
		assert.LessOrEqual(t, d, ceiling, n)
	}
}

// FuzzMarker: any user Acquire accepts gets tags within Deepgram's limit,
// a comment within keystest's bound, and a marker that round-trips; a
// user Acquire refuses never parses back; no user can make a comment that
// parses as another lease's marker.
func FuzzMarker(f *testing.F) {
	for _, s := range []string{"alice", "a b", "lease=", " mgr=0000000000000000", "%", "🎤", "x user=y", " user64=AAAA",
		strings.Repeat("é", 64), strings.Repeat("日", 13), strings.Repeat("🎤", 32), strings.Repeat(" ", 39), strings.Repeat("a", 116)} {
		f.Add(s)
	}
	lease, mgr := strings.Repeat("a", idLen), strings.Repeat("b", idLen)
	f.Fuzz(func(t *testing.T, user string) {
		m := Marker{Lease: lease, Manager: mgr, User: user}
		if checkUser(user) != nil {
			if _, err := ParseMarker(m.comment(), m.tags()); err == nil {
				t.Fatalf("invalid user %q parsed back", user)
			}
			if _, err := UserTag(user); err == nil {
				t.Fatalf("invalid user %q got a tag", user)
			}
			return
		}
		checkMarker(t, m)
	})
}

// FuzzMarkerPair: two distinct users never share a user tag or a comment,
// and neither's comment parses as the other's.
func FuzzMarkerPair(f *testing.F) {
	f.Add("alice", "bob")
	f.Add("a b", "a%20b")
	f.Add(strings.Repeat("é", 64), strings.Repeat("é", 63)+"e")
	f.Add(strings.Repeat("a", 115), strings.Repeat("a", 116))
	f.Add("x", "eA")
	lease, mgr := strings.Repeat("a", idLen), strings.Repeat("b", idLen)
	f.Fuzz(func(t *testing.T, a, b string) {
		if a == b || checkUser(a) != nil || checkUser(b) != nil {
			return
		}
		ma, mb := Marker{Lease: lease, Manager: mgr, User: a}, Marker{Lease: lease, Manager: mgr, User: b}
		if ma.tags()[3] == mb.tags()[3] {
			t.Fatalf("users %q and %q share the tag %q", a, b, ma.tags()[3])
		}
		if ma.comment() == mb.comment() {
			t.Fatalf("users %q and %q share the comment %q", a, b, ma.comment())
		}
		if got, err := ParseMarker(ma.comment(), mb.tags()); err != nil || got.User != a {
			t.Fatalf("%q's comment with %q's tags: %+v, %v", a, b, got, err)
		}
	})
}

func TestIDKeyIsOneToOne(t *testing.T) {
	seen := map[uint64]string{}
	for range 1000 {
		id := newID()
		k, ok := idKey(id)
		require.True(t, ok, "newID %q is an ID", id)
		require.NotContains(t, seen, k, "two IDs share a key")
		seen[k] = id
		assert.Equal(t, id, fmt.Sprintf("%016x", k), "the key spells the ID back")
	}
	for _, bad := range []string{"", "0123456789abcde", "0123456789abcdef0", "0123456789ABCDEF", "0123456789abcdeg", "+123456789abcdef", "0x23456789abcdef"} {
		_, ok := idKey(bad)
		assert.False(t, ok, "idKey(%q)", bad)
	}
}

// comment renders m as a key comment, with the encoder real keys use (for
// these tests only). m.User must pass checkUser.
func (m Marker) comment() string {
	field, _ := userMarks(m.User)
	return markerComment(m.Lease, m.Manager, field)
}

// tags renders m as key tags. m.User must pass checkUser.
func (m Marker) tags() []string {
	_, tag := userMarks(m.User)
	return markerTags(m.Lease, markerTag+":mgr="+m.Manager, tag, 0)
}
