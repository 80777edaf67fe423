package keystest

import (
	"errors"
	"fmt"
	"strings"
)

// checkStreamCredential reports whether a credential may open a /v1/listen
// stream right now: nil for an API key ("token") that exists, is neither
// deleted nor expired and has usage:write (directly or through a role), or
// for a grant token ("bearer") signed by this server and not expired.
// Otherwise the error says why; it never contains the secret. scheme is
// case-insensitive. Safe for concurrent use.
//
// The check is made when a stream opens only: a stream outlives the
// deletion or expiry of the key that opened it, as Deepgram's guidance
// (delete the key once the socket is open) assumes.
func (s *Server) checkStreamCredential(scheme, secret string) error {
	if secret == "" {
		return errors.New("keystest: empty credential")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	switch strings.ToLower(scheme) {
	case "token":
		k := s.bySecret[secret]
		switch {
		case k == nil: // bySecret holds no deleted key
			return errors.New("keystest: unknown or deleted API key")
		case k.expired(now):
			return fmt.Errorf("keystest: API key %s expired", k.id)
		case !rightsOf(k.scopes)["usage:write"]:
			return fmt.Errorf("keystest: API key %s lacks usage:write", k.id)
		}
		return nil
	case "bearer":
		c, err := verifyJWT(s.jwtSecret, secret, now)
		if err != nil {
			return fmt.Errorf("keystest: grant token refused: %v", err)
		}
		if !strings.Contains(" "+c.Scope+" ", " usage:write ") {
			return errors.New("keystest: grant token lacks usage:write")
		}
		return nil
	}
	return fmt.Errorf("keystest: unsupported credential scheme %q (want token or bearer)", scheme)
}
