package keystest

import (
	"slices"
	"strings"
	"time"

	"github.com/dglease/dglease/keys"
)

// KeyStatus is the state of a key in the fake. A plain value.
type KeyStatus string

// Key states.
const (
	// StatusActive: the key authenticates and is listed with status=active.
	StatusActive KeyStatus = "active"
	// StatusExpired: past its expiry; it no longer authenticates but is
	// still listed, with status=expired, until deleted.
	StatusExpired KeyStatus = "expired"
	// StatusDeleted: deleted through the API or revoked with
	// [Server.RevokeKey]; neither listed nor authenticating.
	StatusDeleted KeyStatus = "deleted"
)

// KeyState is a key as the fake sees it, for assertions: a snapshot the
// caller owns (no memory is shared with the server).
//
// A plain value: safe to copy and to read from several goroutines; nothing
// in it changes after it is returned.
type KeyState struct {
	// Key is the key record. Key.Secret is always empty.
	Key keys.Key
	// Status is the key's state at the server's current time.
	Status KeyStatus
	// DeletedAt is when the key was deleted or revoked (server clock);
	// zero if it was not.
	DeletedAt time.Time
	// Deletes is how many DELETE calls for this key succeeded (0 or 1: a
	// second one answers 404), to assert that a key was deleted exactly
	// once through the API. A revoke does not count.
	Deletes int
}

// Request is one call the server received, for assertions: a snapshot the
// caller owns. It never holds a secret.
//
// A plain value: safe to copy and to read from several goroutines; nothing
// in it changes after it is returned.
type Request struct {
	// Time is when the call ended, on the server's clock.
	Time time.Time
	// RequestID is the request_id of the answer (also its dg-request-id
	// header).
	RequestID string
	// Method and Path are the request's; Query its raw query string.
	Method, Path, Query string
	// Op is the call it was routed to; 0 for an unknown route or method.
	Op Op
	// KeyID is the key ID in the path (get and delete), if any.
	KeyID string
	// Scheme is the lower-cased Authorization scheme ("token", "bearer")
	// or "" when none was sent. The credential itself is never kept.
	Scheme string
	// Status is the HTTP status answered, or 0 when no answer was sent
	// (hang, lost answer, client gone, server closed).
	Status int
}

// Keys returns every key the server has held, deleted ones included, in
// creation order, without secrets.
func (s *Server) Keys() []KeyState {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	out := make([]KeyState, 0, len(s.keys))
	for _, k := range s.keys {
		out = append(out, stateOf(k, now))
	}
	return out
}

// Key returns the state of key id, deleted or not, and whether the server
// ever held it. Safe for concurrent use.
func (s *Server) Key(id string) (KeyState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.byID[id]
	if k == nil {
		return KeyState{}, false
	}
	return stateOf(k, s.now()), true
}

// stateOf is k's KeyState at now. s.mu is held.
func stateOf(k *keyRecord, now time.Time) KeyState {
	st := KeyState{Key: publicKey(k), Status: StatusActive, DeletedAt: k.deletedAt, Deletes: deleteCount(k)}
	switch {
	case k.deleted():
		st.Status = StatusDeleted
	case k.expired(now):
		st.Status = StatusExpired
	}
	return st
}

// LiveKeys returns the keys that are neither deleted nor expired (the
// seeded admin key included), sorted by ID, without secrets.
func (s *Server) LiveKeys() []keys.Key {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var out []keys.Key
	for _, k := range s.keys {
		if !k.deleted() && !k.expired(now) {
			out = append(out, publicKey(k))
		}
	}
	slices.SortFunc(out, func(a, b keys.Key) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Requests returns the calls received so far, in the order they ended.
// Calls to /v1/listen are not included.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// deleteCount is how many DELETE calls for k succeeded: 0 or 1.
func deleteCount(k *keyRecord) int {
	if k.deletedByAPI {
		return 1
	}
	return 0
}

// AddKey seeds a key as if created by the admin, without a call, and
// returns it with its Secret. spec.TTL and spec.ExpiresAt are read on the
// server's clock; with neither set the key never expires (unlike keys
// created through keys.Client); empty scopes are allowed.
//
// Misuse (both TTL and ExpiresAt, a negative TTL, an unknown scope) fails
// the test with t.Errorf on a server from [NewServer] and adds nothing
// (returning the zero Key); on a server from [Start] it panics, as
// net/http/httptest does. The other control methods treat bad input the
// same way.
func (s *Server) AddKey(spec keys.Spec) keys.Key {
	for _, sc := range spec.Scopes {
		if !knownScope(sc) {
			s.misuse("keystest: AddKey: unknown scope %q", sc)
			return keys.Key{}
		}
	}
	if spec.TTL < 0 || (spec.TTL != 0 && !spec.ExpiresAt.IsZero()) {
		s.misuse("keystest: AddKey: set at most one of TTL and ExpiresAt, and TTL >= 0")
		return keys.Key{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	expires := spec.ExpiresAt
	if spec.TTL > 0 {
		expires = s.now().Add(spec.TTL)
	}
	k := s.addKey(newSecret(), spec.Comment, spec.Scopes, spec.Tags, expires)
	out := publicKey(k)
	out.Secret = k.secret
	return out
}

// RevokeKey deletes key id behind the client's back, as another admin or
// Deepgram's console would: it stops authenticating at once (the admin key
// too: see [Server.AdminKeyID]) and is no longer listed. It does not count
// in [KeyState.Deletes]. It reports whether the key existed and was not
// yet deleted.
func (s *Server) RevokeKey(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.byID[id]
	if k == nil || k.deleted() {
		return false
	}
	s.deleteLocked(k)
	return true
}

// publicKey is k without its secret. s.mu is held.
func publicKey(k *keyRecord) keys.Key {
	return keys.Key{
		ID:      k.id,
		Comment: k.comment,
		Scopes:  slices.Clone(k.scopes),
		Tags:    slices.Clone(k.tags),
		Created: k.created,
		Expires: k.expires,
	}
}
