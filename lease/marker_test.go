package lease

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMarkerRoundTrip(t *testing.T) {
	for _, user := range []string{
		"alice", "user 42", "ünïcödé 🎤", "a=b c=d", "lease=0123456789abcdef mgr=x",
		"%41", "dglease", "tab\there", "new\nline", strings.Repeat("x", MaxUserLen),
	} {
		m := Marker{Lease: newID(), Manager: newID(), User: user}
		got, err := ParseMarker(m.comment(), m.tags())
		require.NoError(t, err, user)
		assert.Equal(t, m, got)
		assert.NotContains(t, m.comment(), "\n")
	}
}

func TestParseMarkerRefuses(t *testing.T) {
	m := Marker{Lease: newID(), Manager: newID(), User: "bob"}
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
		{"raw space in user", "dglease lease=" + m.Lease + " mgr=" + m.Manager + " user=b b", m.tags()},
		{"non-canonical escape", "dglease lease=" + m.Lease + " mgr=" + m.Manager + " user=%62ob", m.tags()},
		{"truncated escape", "dglease lease=" + m.Lease + " mgr=" + m.Manager + " user=bo%4", m.tags()},
		{"empty user", "dglease lease=" + m.Lease + " mgr=" + m.Manager + " user=", m.tags()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseMarker(tt.comment, tt.tags)
			assert.Error(t, err)
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

// FuzzMarker: any UTF-8 user round-trips through a key's comment and tags,
// and no user can make a comment that parses as another lease's marker.
func FuzzMarker(f *testing.F) {
	for _, s := range []string{"alice", "a b", "lease=", " mgr=0000000000000000", "%", "🎤", "x user=y"} {
		f.Add(s)
	}
	lease, mgr := strings.Repeat("a", idLen), strings.Repeat("b", idLen)
	f.Fuzz(func(t *testing.T, user string) {
		m := Marker{Lease: lease, Manager: mgr, User: user}
		got, err := ParseMarker(m.comment(), m.tags())
		if checkUser(user) != nil {
			if err == nil {
				t.Fatalf("invalid user %q parsed back", user)
			}
			return
		}
		if err != nil {
			t.Fatalf("user %q: %v", user, err)
		}
		if got != m {
			t.Fatalf("round trip: got %+v want %+v", got, m)
		}
		c := m.comment()
		if strings.Count(c, " ") != 3 || !utf8.ValidString(c) {
			t.Fatalf("comment %q has forged fields or invalid UTF-8", c)
		}
	})
}
