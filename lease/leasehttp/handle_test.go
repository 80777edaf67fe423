package leasehttp

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

var testSigner = newSigner(bytes.Repeat([]byte{7}, MinReleaseKeyLen))

func sample() (*handle, string) {
	h := &handle{
		manager:       [8]byte{1, 2, 3, 4, 5, 6, 7, 8},
		lease:         [8]byte{9, 10, 11, 12, 13, 14, 15, 16},
		expires:       time.UnixMilli(1_800_000_000_123),
		serverExpires: time.UnixMilli(1_800_000_005_123),
		keyID:         "0d6bd9c4-5a4f-4f0e-9a8c-6a0a9c3e1f2b",
	}
	return h, testSigner.seal(h, "alice")
}

func TestHandleRoundTrip(t *testing.T) {
	for _, keyID := range []string{"", "k", "0d6bd9c4-5a4f-4f0e-9a8c-6a0a9c3e1f2b", string(bytes.Repeat([]byte{'x'}, maxKeyID))} {
		h, _ := sample()
		h.keyID = keyID
		s := testSigner.seal(h, "alice")
		if len(s) > maxHandleLen {
			t.Fatalf("handle of %d characters is over maxHandleLen %d", len(s), maxHandleLen)
		}
		got, body, sig, err := parse(s)
		if err != nil {
			t.Fatalf("parse(seal(%q)): %v", keyID, err)
		}
		if !testSigner.verify(body, sig, "alice") {
			t.Fatalf("a sealed handle does not verify")
		}
		if testSigner.verify(body, sig, "alicf") || newSigner(bytes.Repeat([]byte{8}, MinReleaseKeyLen)).verify(body, sig, "alice") {
			t.Fatalf("a handle verifies for another user or key")
		}
		if got.manager != h.manager || got.lease != h.lease || !got.expires.Equal(h.expires) || !got.serverExpires.Equal(h.serverExpires) || got.keyID != h.keyID {
			t.Fatalf("parse(seal(h)) = %+v, want %+v", got, *h)
		}
	}
}

// TestHandleHasOneSpelling: a handle parses only as it was sealed, not
// with a line break in it (base64's decoder skips them) or with stray bits
// in its last character.
func TestHandleHasOneSpelling(t *testing.T) {
	_, good := sample()
	if _, _, _, err := parse(good); err != nil {
		t.Fatalf("the sealed handle does not parse: %v", err)
	}
	h, _ := sample()
	h.keyID = "k" // 67 bytes: the last character carries 4 padding bits
	short := testSigner.seal(h, "alice")
	last := strings.IndexByte(alphabet, short[len(short)-1])
	stray := short[:len(short)-1] + string(alphabet[last^1])
	for _, s := range []string{good[:10] + "\n" + good[10:], good + "\r\n", stray} {
		if _, _, _, err := parse(s); err == nil {
			t.Errorf("%q parses: a second spelling of the same handle", s)
		}
	}
}

const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// FuzzParseHandle: no input panics the parser, none over maxHandleLen
// parses, and none but the sealed one verifies for its user under its key.
func FuzzParseHandle(f *testing.F) {
	_, good := sample()
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add(good + "A")
	f.Add("")
	f.Add("AQ")
	f.Add(good[:40] + "\n" + good[40:]) // base64 skips line breaks: found by this target
	raw, _ := base64.RawURLEncoding.DecodeString(good)
	for i := range raw {
		b := bytes.Clone(raw)
		b[i] ^= 0x80
		f.Add(base64.RawURLEncoding.EncodeToString(b))
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, body, sig, err := parse(s)
		if err != nil {
			return
		}
		if len(s) > maxHandleLen {
			t.Fatalf("a handle of %d characters parsed", len(s))
		}
		if len(h.keyID) > maxKeyID || len(sig) != macLen {
			t.Fatalf("parse returned key ID of %d bytes, signature of %d", len(h.keyID), len(sig))
		}
		if testSigner.verify(body, sig, "alice") && s != good {
			t.Fatalf("%q verifies but is not the sealed handle", s)
		}
	})
}
