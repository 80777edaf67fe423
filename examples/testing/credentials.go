// Package credentials is a small HTTP handler that hands a browser a
// short-lived Deepgram key, and, in credentials_test.go, the tests to copy
// with it: they run against the fake Deepgram of keys/keystest and show one
// technique each (asserting the key's scopes and TTL, injecting Deepgram
// failures, rate limits, testing/synctest to see the TTL delete the key
// without waiting, Manager.Flush to wait for a deletion outside synctest,
// and checking that no secret reaches the logs).
//
//	go test ./examples/testing
//
// Wire it up with a Manager and your own authentication:
//
//	leases, err := lease.New(client, lease.WithHooks(lease.LogHooks(logger)))
//	...
//	mux.Handle("/deepgram/credential", credentials.CredentialHandler(leases, userFromSession))
//
// The browser POSTs to get {"secret","expires","lease_id"}, opens its
// WebSocket to Deepgram with the secret, then DELETEs
// /deepgram/credential?lease_id=... so the key is deleted at once
// (Deepgram checks a key when the socket opens; the stream outlives it).
// If it never does, the lease's TTL deletes the key.
package credentials

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/dglease/dglease/lease"
)

// Credential is the JSON answer to a POST.
type Credential struct {
	// Secret is the Deepgram API key, for this user only.
	Secret string `json:"secret"`
	// Expires is when the lease ends and the key is deleted.
	Expires time.Time `json:"expires"`
	// LeaseID names the lease for the DELETE that releases it.
	LeaseID string `json:"lease_id"`
}

// CredentialHandler answers:
//
//   - POST: a new credential for the user userOf finds in the request
//     (200, JSON [Credential], Cache-Control: no-store); 401 when userOf
//     finds none; 429 with Retry-After when Acquire is denied (the user is
//     over the Manager's rate limit or caps, or Deepgram itself answered
//     429); 502 when Deepgram fails otherwise; 503 once m is closed.
//   - DELETE ?lease_id=ID: releases that lease of the same user (204), so
//     its key is deleted now rather than at the end of its TTL; 404 for a
//     lease that is not the user's or has already ended.
//
// Failures are logged by m's hooks (lease.LogHooks), never with a secret.
// The handler keeps no *Lease, so it detaches each one: without Detach, leak
// detection would find the dropped *Lease and delete its key within about a
// second, before the browser could use it. It releases the lease later by
// ID through m, after checking with m.Owner that it is the user's.
func CredentialHandler(m *lease.Manager, userOf func(*http.Request) (string, bool)) http.Handler {
	return &handler{m: m, userOf: userOf}
}

type handler struct {
	m      *lease.Manager
	userOf func(*http.Request) (string, bool)
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	user, ok := h.userOf(r)
	if !ok {
		writeError(w, http.StatusUnauthorized, "sign in first")
		return
	}
	switch r.Method {
	case http.MethodPost:
		h.issue(w, r, user)
	case http.MethodDelete:
		h.release(w, r, user)
	default:
		w.Header().Set("Allow", "POST, DELETE")
		writeError(w, http.StatusMethodNotAllowed, "use POST or DELETE")
	}
}

func (h *handler) issue(w http.ResponseWriter, r *http.Request, user string) {
	// Not r.Context(): it ends when this handler returns, which would end
	// the lease before the browser could use the key.
	l, err := h.m.Acquire(context.WithoutCancel(r.Context()), user)
	var denied *lease.DeniedError
	switch {
	case errors.As(err, &denied): // every ErrDenied: RetryAfter is always positive
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(denied.RetryAfter.Seconds()))))
		writeError(w, http.StatusTooManyRequests, "too many requests; retry later")
		return
	case errors.Is(err, lease.ErrClosed):
		writeError(w, http.StatusServiceUnavailable, "shutting down")
		return
	case err != nil:
		writeError(w, http.StatusBadGateway, "Deepgram could not issue a credential")
		return
	}
	// The browser reports back by lease ID; until then, or until the TTL,
	// the Manager keeps the lease.
	l.Detach()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(Credential{Secret: l.Secret(), Expires: l.Expires(), LeaseID: l.ID()})
}

func (h *handler) release(w http.ResponseWriter, r *http.Request, user string) {
	id := r.URL.Query().Get("lease_id")
	if owner, ok := h.m.Owner(id); !ok || owner != user {
		writeError(w, http.StatusNotFound, "no such credential")
		return
	}
	h.m.Release(id)
	w.WriteHeader(http.StatusNoContent)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
