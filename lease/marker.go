package lease

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/dglease/dglease/keys"
)

// The marker every leased key carries, in its comment and its tags, so that
// Sweep (from any replica) and Deepgram's console can attribute it:
//
//	comment: "dglease lease=<lease ID> mgr=<manager ID> user=<escaped user>"
//	tags:    "dglease", "dglease:lease=<lease ID>", "dglease:mgr=<manager ID>", "dglease:user=<escaped user>"
//
// The escaped user writes every byte outside [A-Za-z0-9._~-] as %XX, so
// that any UTF-8 round-trips and no user can forge another field. Deepgram
// limits tags to 128 characters ("Tags are limited to 128 characters per
// tag", https://developers.deepgram.com/docs/tagging; keys.MaxTagLen), and
// escaping triples a byte: a user whose escaped form is longer than
// maxReadableUser (115) characters gets the compact form instead,
//
//	comment: "dglease lease=<lease ID> mgr=<manager ID> user64=<base64url of the user>"
//	tags:    "dglease", ..., "dglease:user-sha256=<hex SHA-256 of the user>"
//
// The comment keeps the whole user (at most 230 bytes: keys/keystest's
// comment bound is 256) so that ParseMarker recovers it; the tag, which
// Deepgram's usage reports filter by (see UserTag and StreamedAudio), is a
// digest: 84 characters. The forms cannot be confused (user= or user64=,
// user= or user-sha256=), this version writes exactly one marker per user
// (ParseMarker also reads a long user= comment, as older versions wrote,
// and gives back the same user), and two users share a tag only if
// SHA-256 collides.
const (
	markerTag    = "dglease"
	markerPrefix = "dglease "

	userTagPrefix       = markerTag + ":user="
	userDigestTagPrefix = markerTag + ":user-sha256="
	// maxReadableUser is the longest escaped user that fits a tag.
	maxReadableUser = keys.MaxTagLen - len(userTagPrefix)
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

// markerComment is the comment of a key leased as lease leaseID by the
// Manager mgr to the user whose comment field is userField (userMarks).
// apiKeys.issue writes every key's comment with it, and Marker.comment
// renders a Marker with it.
func markerComment(leaseID, mgr, userField string) string {
	return markerPrefix + "lease=" + leaseID + " mgr=" + mgr + userField
}

// markerTags is the marker's tags: mgrTag is markerTag+":mgr=" and the
// Manager's ID (built once per Manager), userTag the user's (userMarks);
// the slice has room for extra more tags.
func markerTags(leaseID, mgrTag, userTag string, extra int) []string {
	tags := make([]string, 0, 4+extra)
	return append(tags, markerTag, markerTag+":lease="+leaseID, mgrTag, userTag)
}

// userMarks returns what a marker says of user u, which must pass
// checkUser: the comment's last field (" user=<escaped>", or
// " user64=<base64url>" when the escaped form would not fit a tag) and the
// user's tag. A Manager computes them once per user (userState).
func userMarks(u string) (commentField, tag string) {
	e := encodeUser(u)
	if len(e) <= maxReadableUser {
		return " user=" + e, userTagPrefix + e
	}
	sum := sha256.Sum256([]byte(u))
	return " user64=" + base64.RawURLEncoding.EncodeToString([]byte(u)), userDigestTagPrefix + hex.EncodeToString(sum[:])
}

// UserTag returns the tag that every API key leased to user carries, by
// which Deepgram attributes the audio streamed with those keys (its usage
// reports filter by tag; see [StreamedAudio]) and by which the user's keys
// can be found in Deepgram's console. It depends on the user alone, so any
// process computes the same one: "dglease:user=<escaped user>" when that
// fits Deepgram's 128-character tag limit, else
// "dglease:user-sha256=<hex SHA-256 of the user>". It refuses the users
// Acquire refuses (empty, over MaxUserLen bytes, not UTF-8).
func UserTag(user string) (string, error) {
	if err := checkUser(user); err != nil {
		return "", err
	}
	_, tag := userMarks(user)
	return tag, nil
}

// ParseMarker recovers the marker from a key's comment and tags. It fails
// unless the comment is a marker comment and the tags carry the same lease
// and manager IDs: a key is only ever treated as this library's when both
// agree. It reads both forms of the user (see [UserTag]); the user tag
// itself is not required, so that a key whose tags were cut short still
// parses.
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
	for i, name := range []string{"lease=", "mgr="} {
		v, ok := strings.CutPrefix(fields[i], name)
		if !ok {
			return Marker{}, fmt.Errorf("lease: dglease marker lacks %s", strings.TrimSuffix(name, "="))
		}
		if i == 0 {
			m.Lease = v
		} else {
			m.Manager = v
		}
	}
	var err error
	if v, ok := strings.CutPrefix(fields[2], "user="); ok {
		m.User, err = decodeUser(v)
	} else if v, ok := strings.CutPrefix(fields[2], "user64="); ok {
		m.User, err = decodeUser64(v)
	} else {
		err = errors.New("lease: dglease marker lacks user")
	}
	if err != nil {
		return Marker{}, err
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
	_, ok := idKey(s)
	return ok
}

// idKey is the number a lowercase hex ID spells (big-endian), and whether
// s is such an ID: one number per ID, so that a map keyed by it needs no
// string hashing or comparison.
func idKey(s string) (uint64, bool) {
	if len(s) != idLen {
		return 0, false
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		default:
			return 0, false
		}
		v = v<<4 | uint64(c)
	}
	return v, true
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

// decodeUser reverses encodeUser, accepting only its exact output. It
// accepts one longer than maxReadableUser: earlier versions wrote every
// user so.
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

// user64 is the encoding of the compact form: no padding, and Strict
// refuses the encodings of one value that differ in their unused bits.
var user64 = base64.RawURLEncoding.Strict()

// decodeUser64 reverses the compact form of the comment, accepting only a
// user whose escaped form does not fit a tag, so that each user is written
// one way.
func decodeUser64(s string) (string, error) {
	b, err := user64.DecodeString(s)
	if err != nil {
		return "", errors.New("lease: malformed user64 in dglease marker")
	}
	u := string(b)
	if err := checkUser(u); err != nil {
		return "", err
	}
	if len(encodeUser(u)) <= maxReadableUser {
		return "", errors.New("lease: non-canonical user64 in dglease marker: the user fits the readable form")
	}
	return u, nil
}
