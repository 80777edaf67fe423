package keys

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/dglease/dglease/internal/dgtag"
)

// redacted replaces every secret in printed values.
const redacted = "[REDACTED]"

// Spec describes a key to create. The zero value is not valid: Scopes must
// be non-empty and exactly one of TTL and ExpiresAt must be set, so that
// every key this package creates expires on Deepgram's side.
//
// A Spec is a plain value; it is safe to share once built.
type Spec struct {
	// Comment is shown in Deepgram's console. Optional.
	Comment string
	// Scopes the key gets, e.g. "usage:write". Required, non-empty.
	Scopes []string
	// Tags are sent as the key's tags (usage attribution): Deepgram
	// applies them to every request made with the key. Optional; each
	// non-empty, valid UTF-8 and at most [MaxTagLen] bytes.
	Tags []string
	// TTL is how long the key lives on Deepgram's side, rounded up to a whole
	// second. Set TTL or ExpiresAt, not both.
	TTL time.Duration
	// ExpiresAt is when the key stops working. It must be in the future. Set
	// TTL or ExpiresAt, not both.
	ExpiresAt time.Time
}

// Key is a Deepgram API key record.
//
// Secret is set only on the value returned by [Client.Create]: Deepgram
// shows a key's secret once, in the create answer. Key prints redacted
// under every fmt verb, %#v and log/slog; read the Secret field to hand the
// secret on.
//
// A plain value: safe to copy and to read from several goroutines; nothing
// in it changes after it is returned.
type Key struct {
	// ID is Deepgram's api_key_id.
	ID string
	// Secret is the key itself (40 hex characters). Empty in List results.
	Secret string
	// Comment is the key's comment.
	Comment string
	// Scopes are the key's scopes.
	Scopes []string
	// Tags are the key's tags, nil when it has none.
	Tags []string
	// Created is when Deepgram created the key.
	Created time.Time
	// Expires is when the key stops working; zero when it never expires.
	Expires time.Time
}

// Expired reports whether k's expiry has passed at now. A key without an
// expiry never expires.
func (k Key) Expired(now time.Time) bool {
	return !k.Expires.IsZero() && !now.Before(k.Expires)
}

// String returns the key's description with its secret redacted.
func (k Key) String() string {
	return fmt.Sprintf("keys.Key{ID:%q Secret:%q Comment:%q Scopes:%q Tags:%q Created:%s Expires:%s}",
		k.ID, redactIfSet(k.Secret), k.Comment, k.Scopes, k.Tags, fmtTime(k.Created), fmtTime(k.Expires))
}

// Format prints the redacted description for every verb, so that no verb
// (%v, %+v, %#v, %s, %q, %x, %d, ...) can reach the Secret field.
func (k Key) Format(f fmt.State, verb rune) { formatRedacted(f, verb, k.String()) }

// LogValue implements [slog.LogValuer]: the secret is redacted.
func (k Key) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("id", k.ID),
		slog.String("comment", k.Comment),
		slog.Any("scopes", k.Scopes),
	}
	if len(k.Tags) > 0 {
		attrs = append(attrs, slog.Any("tags", k.Tags))
	}
	if k.Secret != "" {
		attrs = append(attrs, slog.String("secret", redacted))
	}
	if !k.Expires.IsZero() {
		attrs = append(attrs, slog.Time("expires", k.Expires))
	}
	return slog.GroupValue(attrs...)
}

// MarshalJSON encodes the key with its secret redacted, so that a Key
// logged or stored as JSON (including by log/slog's JSON handler, which
// does not call LogValue on nested values) never carries the secret. To
// send the secret on, put k.Secret into a field of your own.
func (k Key) MarshalJSON() ([]byte, error) {
	type plain struct {
		ID      string    `json:"id"`
		Secret  string    `json:"secret,omitempty"`
		Comment string    `json:"comment"`
		Scopes  []string  `json:"scopes"`
		Tags    []string  `json:"tags,omitempty"`
		Created time.Time `json:"created"`
		Expires time.Time `json:"expires"`
	}
	return json.Marshal(plain{k.ID, redactIfSet(k.Secret), k.Comment, k.Scopes, k.Tags, k.Created, k.Expires})
}

// Token is a Deepgram grant token: a JWT that carries usage:write for
// /listen, /speak and /read, sent as "Authorization: Bearer <Secret>" (or as
// the "bearer" WebSocket subprotocol from a browser). It cannot be revoked;
// it only expires.
//
// Token prints redacted under every fmt verb, %#v and log/slog.
//
// A plain value: safe to copy and to read from several goroutines; nothing
// in it changes after it is returned.
type Token struct {
	// Secret is the JWT.
	Secret string
	// Expires is when the token stops working, computed from the answer's
	// expires_in on the local clock.
	Expires time.Time
}

// String returns the token's description with its secret redacted.
func (t Token) String() string {
	return fmt.Sprintf("keys.Token{Secret:%q Expires:%s}", redactIfSet(t.Secret), fmtTime(t.Expires))
}

// Format prints the redacted description for every verb, %#v included.
func (t Token) Format(f fmt.State, verb rune) { formatRedacted(f, verb, t.String()) }

// MarshalJSON encodes the token with its secret redacted; see
// [Key.MarshalJSON].
func (t Token) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Secret  string    `json:"secret,omitempty"`
		Expires time.Time `json:"expires"`
	}{redactIfSet(t.Secret), t.Expires})
}

// LogValue implements [slog.LogValuer]: the secret is redacted.
func (t Token) LogValue() slog.Value {
	return slog.GroupValue(slog.String("secret", redactIfSet(t.Secret)), slog.Time("expires", t.Expires))
}

func redactIfSet(s string) string {
	if s == "" {
		return ""
	}
	return redacted
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// formatRedacted writes s for any verb; %q quotes it.
func formatRedacted(f fmt.State, verb rune, s string) {
	if verb == 'q' {
		fmt.Fprintf(f, "%q", s)
		return
	}
	fmt.Fprint(f, s)
}

// MaxTagLen is the longest tag Deepgram accepts: "Tags are limited to 128
// characters per tag" (Deepgram's Tagging page,
// https://developers.deepgram.com/docs/tagging). Deepgram does not say how
// it counts characters; this package counts UTF-8 bytes, the strictest
// reading, so a tag it lets through is within the limit however Deepgram
// counts (for ASCII tags every reading agrees).
const MaxTagLen = dgtag.MaxLen

// checkTag reports a tag Deepgram would refuse (see internal/dgtag: empty
// or only spaces, not UTF-8, or longer than MaxTagLen). Its error quotes
// at most the tag's start.
func checkTag(what, tag string) error {
	p := dgtag.Problem(tag)
	if p == "" {
		return nil
	}
	if len(tag) > MaxTagLen {
		p += ": shorten it, or send a digest of it"
	}
	return fmt.Errorf("keys: %s %q %s", what, clean(tag, 48), p)
}
