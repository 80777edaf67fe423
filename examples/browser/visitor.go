package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
)

// sessionCookie holds the demo's session token.
const sessionCookie = "dglease_demo_session"

// visitor identifies who is asking: the user a lease is for, so that rate
// limits, caps and ownership are per visitor.
//
// This demo has no login: each browser gets a random session token in an
// HttpOnly, SameSite=Strict cookie, and the visitor ID is derived from it
// (so logs, which name the user, never show the token). A real application
// plugs in its own authentication here: return the signed-in user's ID
// from its session or verified token, and refuse the request (401) when
// there is none.
//
// With create, a request without a valid session gets a new one; without
// it, ok is false.
func (s *server) visitor(w http.ResponseWriter, r *http.Request, create bool) (id string, ok bool) {
	if c, err := r.Cookie(sessionCookie); err == nil && validToken(c.Value) {
		return visitorID(c.Value), true
	}
	if !create {
		return "", false
	}
	token := rand.Text()
	http.SetCookie(w, &http.Cookie{
		Name:     sessionCookie,
		Value:    token,
		Path:     "/",
		HttpOnly: true,
		SameSite: http.SameSiteStrictMode,
		Secure:   r.TLS != nil, // the demo also runs on plain http://localhost
	})
	return visitorID(token), true
}

// visitorID derives a visitor's ID from its session token.
func visitorID(token string) string {
	sum := sha256.Sum256([]byte(token))
	return "visitor-" + hex.EncodeToString(sum[:8])
}

// validToken reports whether v looks like a token made by rand.Text.
func validToken(v string) bool {
	if len(v) < 26 || len(v) > 64 {
		return false
	}
	for _, c := range v {
		if !('A' <= c && c <= 'Z' || '2' <= c && c <= '7') {
			return false
		}
	}
	return true
}
