package keystest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// grantClaims are the claims of the grant tokens this fake signs.
type grantClaims struct {
	Sub   string `json:"sub"`
	JTI   string `json:"jti"`
	Iat   int64  `json:"iat"`
	Exp   int64  `json:"exp"`
	Scope string `json:"scope"`
}

var jwtHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

// signJWT returns an HS256 JWT of claims signed with secret.
func signJWT(secret []byte, claims grantClaims) string {
	payload, err := json.Marshal(claims)
	if err != nil {
		panic("keystest: encoding JWT claims: " + err.Error()) // plain struct: cannot happen
	}
	signing := jwtHeader + "." + base64.RawURLEncoding.EncodeToString(payload)
	return signing + "." + base64.RawURLEncoding.EncodeToString(hs256(secret, signing))
}

func hs256(secret []byte, s string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(s))
	return m.Sum(nil)
}

// verifyJWT checks token's HS256 signature against secret and its expiry
// against now, and returns its claims.
func verifyJWT(secret []byte, token string, now time.Time) (grantClaims, error) {
	var c grantClaims
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return c, errors.New("not a JWT")
	}
	if parts[0] != jwtHeader {
		return c, errors.New("JWT header is not HS256 from this server")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, hs256(secret, parts[0]+"."+parts[1])) {
		return c, errors.New("JWT signature is not this server's")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return c, errors.New("JWT payload is not base64url")
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return c, fmt.Errorf("JWT claims do not parse: %v", err)
	}
	if now.Unix() >= c.Exp {
		return c, fmt.Errorf("grant token expired at %s", time.Unix(c.Exp, 0).UTC().Format(time.RFC3339))
	}
	return c, nil
}
