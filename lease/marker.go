package lease

import (
	"errors"
	"fmt"
	"strings"
)

// The marker every leased key carries, in its comment and its tags, so that
// Sweep (from any replica) and Deepgram's console can attribute it:
//
//	comment: "dglease lease=<lease ID> mgr=<manager ID> user=<encoded user>"
//	tags:    "dglease", "dglease:lease=<lease ID>", "dglease:mgr=<manager ID>", "dglease:user=<encoded user>"
//
// The user is encoded so that any UTF-8 round-trips and no user can forge
// another field: every byte outside [A-Za-z0-9._~-] is written %XX.
const (
	markerTag    = "dglease"
	markerPrefix = "dglease "
)

// Marker is the attribution a leased key carries, as recovered by
// [ParseMarker].
type Marker struct {
	// Lease is the lease ID.
	Lease string
	// Manager is the ID of the Manager that created the key.
	Manager string
	// User is the user the key was leased to.
	User string
}

// comment renders m as a key comment.
func (m Marker) comment() string {
	return markerPrefix + "lease=" + m.Lease + " mgr=" + m.Manager + " user=" + encodeUser(m.User)
}

// tags renders m as key tags.
func (m Marker) tags() []string {
	return []string{markerTag, markerTag + ":lease=" + m.Lease, markerTag + ":mgr=" + m.Manager, markerTag + ":user=" + encodeUser(m.User)}
}

// ParseMarker recovers the marker from a key's comment and tags. It fails
// unless the comment is a marker comment and the tags carry the same lease
// and manager IDs: a key is only ever treated as this library's when both
// agree.
func ParseMarker(comment string, tags []string) (Marker, error) {
	rest, ok := strings.CutPrefix(comment, markerPrefix)
	if !ok {
		return Marker{}, errors.New("lease: comment carries no dglease marker")
	}
	fields := strings.Split(rest, " ")
	if len(fields) != 3 {
		return Marker{}, errors.New("lease: malformed dglease marker")
	}
	var m Marker
	for i, name := range []string{"lease=", "mgr=", "user="} {
		v, ok := strings.CutPrefix(fields[i], name)
		if !ok {
			return Marker{}, fmt.Errorf("lease: dglease marker lacks %s", strings.TrimSuffix(name, "="))
		}
		switch i {
		case 0:
			m.Lease = v
		case 1:
			m.Manager = v
		case 2:
			u, err := decodeUser(v)
			if err != nil {
				return Marker{}, err
			}
			m.User = u
		}
	}
	if !isID(m.Lease) || !isID(m.Manager) {
		return Marker{}, errors.New("lease: dglease marker has malformed IDs")
	}
	var hasTag, hasLease, hasMgr bool
	for _, t := range tags {
		switch t {
		case markerTag:
			hasTag = true
		case markerTag + ":lease=" + m.Lease:
			hasLease = true
		case markerTag + ":mgr=" + m.Manager:
			hasMgr = true
		}
	}
	if !hasTag || !hasLease || !hasMgr {
		return Marker{}, errors.New("lease: key tags do not match its dglease marker")
	}
	return m, nil
}

// isID reports whether s is a lowercase hex ID as newID makes them.
func isID(s string) bool {
	if len(s) != idLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

const hexDigits = "0123456789ABCDEF"

func unreserved(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '~' || c == '-'
}

// encodeUser writes every byte outside [A-Za-z0-9._~-] as %XX.
func encodeUser(u string) string {
	var b strings.Builder
	b.Grow(len(u))
	for i := 0; i < len(u); i++ {
		c := u[i]
		if unreserved(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

// decodeUser reverses encodeUser, accepting only its exact output.
func decodeUser(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if unreserved(c) {
			b.WriteByte(c)
			continue
		}
		if c != '%' || i+2 >= len(s) {
			return "", errors.New("lease: malformed user in dglease marker")
		}
		hi, lo := strings.IndexByte(hexDigits, s[i+1]), strings.IndexByte(hexDigits, s[i+2])
		if hi < 0 || lo < 0 {
			return "", errors.New("lease: malformed user in dglease marker")
		}
		v := byte(hi<<4 | lo)
		if unreserved(v) {
			return "", errors.New("lease: non-canonical user in dglease marker")
		}
		b.WriteByte(v)
		i += 2
	}
	u := b.String()
	if err := checkUser(u); err != nil {
		return "", err
	}
	return u, nil
}
