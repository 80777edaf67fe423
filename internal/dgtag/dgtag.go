// Package dgtag is the one rule for Deepgram tags, shared by the keys
// client (which refuses a bad tag before any call) and the fakes in
// keys/keystest and internal/fakelisten (which refuse it as Deepgram
// would), so that the three cannot disagree.
package dgtag

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxLen is the longest tag, in UTF-8 bytes: the strictest reading of
// Deepgram's "Tags are limited to 128 characters per tag"
// (https://developers.deepgram.com/docs/tagging).
const MaxLen = 128

// Problem says why Deepgram would refuse tag, or returns "" if it would
// not. The text quotes no part of the tag: callers decide what to show.
func Problem(tag string) string {
	switch {
	case strings.TrimSpace(tag) == "":
		return "is empty or only spaces"
	case !utf8.ValidString(tag):
		return "is not valid UTF-8"
	case len(tag) > MaxLen:
		return fmt.Sprintf("is %d bytes long; Deepgram limits tags to %d characters (counted here in UTF-8 bytes)", len(tag), MaxLen)
	}
	return ""
}
