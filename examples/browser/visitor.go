package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
)

// sessionCookie holds the demo's session token.
const sessionCookie = "dglease_demo_session"

// The visitor is who is asking: the user a lease is for, so that rate
// limits, caps and ownership are per visitor.
//
// This demo has no login: loading the page gives each browser a random
// session token in an HttpOnly, SameSite=Strict cookie (startSession), and
// the visitor ID is derived from it (so logs, which name the user, never
// show the token). A real application plugs in its own authentication in
// identify: return the signed-in user's ID from its session or verified
// token, and an error when there is none.

// identify is the leasehttp identify function: the visitor the session
// cookie names, or errNoSession (401).
func identify(r *http.Request) (string, error) {
	if id, ok := visitorOf(r); ok {
		return id, nil
	}
	return "", errNoSession
}

// noSessionError is identify's refusal; leasehttp answers its StatusCode
// with its text.
type noSessionError struct{}

func (noSessionError) Error() string {
	return "No demo session: reload the page (loading it starts a session), then press Start again."
}

func (noSessionError) StatusCode() int { return http.StatusUnauthorized }

var errNoSession error = noSessionError{}

// visitorOf returns the visitor r's session cookie names, if it has a
// valid one.
func visitorOf(r *http.Request) (id string, ok bool) {
	if c, err := r.Cookie(sessionCookie); err == nil && validToken(c.Value) {
		return visitorID(c.Value), true
	}
	return "", false
}

// startSession gives r's browser a session, unless it has one.
func startSession(w http.ResponseWriter, r *http.Request) {
	if _, ok := visitorOf(r); ok {
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     sessionCookie,
		Value:    rand.Text(),
		Path:     "/",
		HttpOnly: true,
		SameSite: http.SameSiteStrictMode,
		Secure:   r.TLS != nil, // the demo also runs on plain http://localhost
	})
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
