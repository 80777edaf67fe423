package keystest

import (
	"errors"
	"fmt"

	"github.com/dglease/dglease/internal/fakelisten"
)

// checkStreamCredential is the fake's [fakelisten.Authenticate]: it reports
// whether a credential may open a /v1/listen stream right now. nil for an
// API key ([fakelisten.SchemeToken]) that is neither deleted nor expired
// and has usage:write (directly or through a role), or for a grant token
// ([fakelisten.SchemeBearer]) signed by this server and not expired; every
// grant token this server signs carries usage:write. Otherwise the error
// says why; it never contains the secret. fakelisten passes only those two
// schemes and a non-empty secret. Safe for concurrent use.
//
// The account it returns, which fakelisten hands back to recordStream when
// the stream ends, is the key's ID, or the grant token's ID (jti).
//
// The check is made when a stream opens only: a stream outlives the
// deletion or expiry of the key that opened it, as Deepgram's guidance
// (delete the key once the socket is open) assumes.
func (s *Server) checkStreamCredential(scheme, secret string) (account string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch scheme {
	case fakelisten.SchemeToken:
		k := s.liveKeyLocked(secret)
		if k == nil {
			return "", errors.New("keystest: unknown, deleted or expired API key")
		}
		if !k.rights["usage:write"] {
			return "", fmt.Errorf("keystest: API key %s lacks usage:write", k.id)
		}
		return k.id, nil
	case fakelisten.SchemeBearer:
		claims, err := verifyJWT(s.jwtSecret, secret, s.now())
		if err != nil {
			return "", fmt.Errorf("keystest: grant token refused: %v", err)
		}
		return claims.JTI, nil
	}
	return "", fmt.Errorf("keystest: unsupported credential scheme %q", scheme)
}
