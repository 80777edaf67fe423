package leasehttp

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"strings"
	"sync"
	"time"
)

// A release handle is what POST /credential returns in "release" and POST
// /release takes back: base64url (no padding) of
//
//	version   1 byte (handleVersion)
//	manager   8 bytes: the issuing Manager's ID, hex-decoded
//	lease     8 bytes: the lease ID, hex-decoded
//	expires   8 bytes: when the lease ends by itself, Unix milliseconds
//	server    8 bytes: when its key stops working, Unix milliseconds
//	keyLen    1 byte, then keyLen bytes of key ID ("" for a grant token)
//	mac       32 bytes: HMAC-SHA256 under the release key of macDomain,
//	          the bytes above, and the user it was issued to
//
// The user is not in the handle (a page has no use for it); the MAC covers
// it, so a handle presented by another user does not verify.
const (
	handleVersion = 1
	macDomain     = "dglease/leasehttp release handle\x00"
	fixedLen      = 1 + 8 + 8 + 8 + 8 + 1
	maxKeyID      = 64
	macLen        = sha256.Size
	// MaxHandleLen bounds a handle's encoded length.
	maxHandleLen = (fixedLen + maxKeyID + macLen + 2) / 3 * 4
)

// strictBase64 decodes handles: unpadded base64url, no stray bits.
var strictBase64 = base64.RawURLEncoding.Strict()

// handle is a release handle's content.
type handle struct {
	manager       [8]byte
	lease         [8]byte
	expires       time.Time
	serverExpires time.Time
	keyID         string
}

// leaseID is the lease ID as lease.Lease.ID writes it.
func (h *handle) leaseID() string { return hex.EncodeToString(h.lease[:]) }

// errMalformed: the handle does not parse. errForged: it parses but its MAC
// does not verify for this user under this key.
var (
	errMalformed = errors.New("release handle is malformed: send the \"release\" value POST /credential returned, unchanged")
	errForged    = errors.New("release handle is not valid for this user: it was altered, forged, or issued to another user")
)

// decodeID hex-decodes a 16-character lease or Manager ID.
func decodeID(id string) ([8]byte, bool) {
	var b [8]byte
	if len(id) != 16 {
		return b, false
	}
	if _, err := hex.Decode(b[:], []byte(id)); err != nil {
		return b, false
	}
	return b, true
}

// signer signs and verifies handles with one key. hmac.New hashes the key
// on every call; a pooled HMAC, Reset after use, keeps that work, so a
// credential or release pays for one HMAC, not for setting one up.
type signer struct{ macs sync.Pool }

func newSigner(key []byte) *signer {
	key = bytes.Clone(key)
	s := &signer{}
	s.macs.New = func() any { return hmac.New(sha256.New, key) }
	return s
}

// seal encodes h for user, signed.
func (s *signer) seal(h *handle, user string) string {
	b := make([]byte, 0, fixedLen+len(h.keyID)+macLen)
	b = append(b, handleVersion)
	b = append(b, h.manager[:]...)
	b = append(b, h.lease[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(h.expires.UnixMilli()))
	b = binary.BigEndian.AppendUint64(b, uint64(h.serverExpires.UnixMilli()))
	b = append(b, byte(len(h.keyID)))
	b = append(b, h.keyID...)
	b = s.mac(b, b, user)
	return base64.RawURLEncoding.EncodeToString(b)
}

// mac appends to dst the handle's signature over body for user.
func (s *signer) mac(dst, body []byte, user string) []byte {
	m := s.macs.Get().(hash.Hash)
	defer func() {
		m.Reset()
		s.macs.Put(m)
	}()
	io.WriteString(m, macDomain)
	m.Write(body)
	var n [2]byte
	binary.BigEndian.PutUint16(n[:], uint16(len(user)))
	m.Write(n[:])
	io.WriteString(m, user)
	return m.Sum(dst)
}

// parse decodes s without verifying it: what it returns is only as good as
// verify's answer on the same bytes.
func parse(s string) (h handle, body, sig []byte, err error) {
	// One spelling per handle: base64's decoder skips CR and LF, and
	// Strict refuses stray bits in the last character.
	if len(s) == 0 || len(s) > maxHandleLen || strings.ContainsAny(s, "\r\n") {
		return h, nil, nil, errMalformed
	}
	b, err := strictBase64.DecodeString(s)
	if err != nil || len(b) < fixedLen+macLen || b[0] != handleVersion {
		return h, nil, nil, errMalformed
	}
	n := int(b[fixedLen-1])
	if n > maxKeyID || len(b) != fixedLen+n+macLen {
		return h, nil, nil, errMalformed
	}
	copy(h.manager[:], b[1:9])
	copy(h.lease[:], b[9:17])
	h.expires = time.UnixMilli(int64(binary.BigEndian.Uint64(b[17:25])))
	h.serverExpires = time.UnixMilli(int64(binary.BigEndian.Uint64(b[25:33])))
	h.keyID = string(b[fixedLen : fixedLen+n])
	return h, b[:fixedLen+n], b[fixedLen+n:], nil
}

// verify reports whether sig signs body for user, in constant time.
func (s *signer) verify(body, sig []byte, user string) bool {
	var buf [macLen]byte
	return hmac.Equal(sig, s.mac(buf[:0], body, user))
}
