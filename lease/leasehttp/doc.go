// Package leasehttp hands short-lived Deepgram credentials from a
// lease.Manager to browsers (and any other HTTP client), safely behind a
// load balancer. Mount a Handler, tell it who each request is for, and a
// page streams its microphone to Deepgram with three lines:
//
//	h, err := leasehttp.New(leases, func(r *http.Request) (string, error) {
//		return sessionUser(r) // your sign-in; an error answers 401
//	}, leasehttp.WithReleaseKey(releaseKey)) // the same 32+ random bytes on every replica
//	if err != nil { ... }
//	mux.Handle("/deepgram/", http.StripPrefix("/deepgram", h))
//
// and in the page:
//
//	import { connect } from '/deepgram/client.js';
//	const ws = await connect({ endpoint: '/deepgram', url: 'wss://api.deepgram.com/v1/listen?model=nova-3' });
//	recorder.ondataavailable = (e) => ws.send(e.data);
//
// # Routes
//
// Relative to where the Handler is mounted:
//
//   - POST /credential (empty body or {}): 200 with Cache-Control: no-store
//     and {"secret", "subprotocol", "lease_id", "expires", "revocable",
//     "release"}. subprotocol is the WebSocket subprotocol list that
//     carries the secret (["token", key] or ["bearer", jwt]: browsers
//     cannot set headers on a WebSocket); release is an opaque signed
//     handle. The lease is detached from the request: it ends by POST
//     /release or by its TTL, never because the handler returned.
//   - POST /release with {"release": "<handle>"}: 204, idempotent until the
//     lease's TTL (after it the handle has expired: 403). The
//     handle is signed with HMAC-SHA256 over the lease ID, key ID, user,
//     expiry and the issuing Manager's ID; a forged, altered or expired
//     handle, or one presented by another user than it was issued to, is
//     refused with 403 and nothing is deleted.
//   - GET /client.js: an ES module for pages, with no dependency: connect
//     asks for a credential, opens the WebSocket, reports it open to
//     /release and resolves to the open socket; a refusal rejects with a
//     CredentialError whose retryAfter says how many seconds to wait.
//
// Errors are JSON {"error": "..."}:
//
//   - 429 with Retry-After (whole seconds, rounded up) and "retry_after"
//     when any limit refused, the Manager's or Deepgram's;
//   - 401 when identify fails (or the status its error chooses, see New);
//   - 403 for a request from a page on an origin not allowed (checked by
//     http.CrossOriginProtection before anything is minted) and for a bad
//     release handle;
//   - 400 for a malformed body, 413 for one over 4 KiB, 405 with Allow for
//     a wrong method, 404 for an unknown route;
//   - 500 when identify names no usable user, or a release could not be
//     recorded (both logged);
//   - 502 when Deepgram failed (the cause is logged, never sent);
//   - 503 once the Manager is closed, or when its Limiter cannot decide
//     (lease.ErrLimiterUnavailable, e.g. Redis down).
//
// The same two routes serve a mobile app or a worker in any language:
//
//	curl -X POST https://app.example.com/deepgram/credential -H 'Cookie: session=...'
//	curl -X POST https://app.example.com/deepgram/release -H 'Cookie: session=...' -d '{"release": "..."}'
//
// # Several replicas
//
// A page's release lands on whichever replica the load balancer picks,
// often not the one holding the lease. With the same WithReleaseKey on
// every replica, any of them verifies the handle; one that does not hold
// the lease deletes its key at once through its own Manager
// (lease.Manager.ReleaseForeign, with its deleter's retries, hooks and
// counters), and the holding replica later finds the key gone and counts
// it in lease.Stats.AlreadyDeleted, with no error. Until then that lease
// still counts in its issuer's caps (lease.WithMaxLeases): the issuer
// cannot know its key is gone. Size the per-user cap for a TTL's worth of
// streams, or route each user to one replica. Without a shared key a
// release reaching another replica is refused with a message that says to
// set one, and the key lives until its TTL.
//
// # Cross-origin pages
//
// By default only same-origin pages may ask for credentials: Go's
// http.CrossOriginProtection refuses POSTs that browsers send from pages
// on other origins, sibling subdomains included.
// WithAllowedOrigins adds origins whose pages may, and answers their
// preflights and requests with the CORS headers (credentials included)
// their fetch needs.
package leasehttp
