// Package dglease hands out short-lived, least-privilege Deepgram
// credentials and guarantees they are cleaned up.
//
// A browser page that streams a microphone to Deepgram must never see the
// project's API key. With dglease the backend mints a key (or grant token)
// that lives seconds, for one user, with usage:write only, and deletes it as
// soon as the stream is open:
//
//	leases, err := lease.New(client)            // client from keys.New
//	l, err := leases.Acquire(ctx, userID)       // scoped key, server-side TTL, rate-limited per user
//	if err != nil { ... }                       // a *lease.DeniedError (ErrDenied) says when to retry
//	defer l.Release()                           // returns at once; deletion is guaranteed and retried
//	stream(l.Secret())
//
// To hand credentials to browsers, mount lease/leasehttp's Handler and
// import its client.js in the page: it mints a credential per request,
// keeps the lease alive past the handler, deletes the key once the page
// reports its WebSocket open (on whichever replica the report lands), and
// answers limits with 429 and Retry-After:
//
//	h, err := leasehttp.New(leases, identify, leasehttp.WithReleaseKey(key))
//	mux.Handle("/deepgram/", http.StripPrefix("/deepgram", h))
//
// See the README and examples/browser.
//
// Which package to import:
//
//   - [github.com/dglease/dglease/keys]: a typed client for Deepgram's key
//     and grant-token APIs, built on the official Go SDK, that reports every
//     failure and cannot be redirected by DEEPGRAM_* environment variables.
//   - [github.com/dglease/dglease/keys/keystest]: a fake Deepgram (keys,
//     grant tokens, /v1/listen) for unit tests without a network.
//   - [github.com/dglease/dglease/lease]: leases with guaranteed deletion,
//     synchronous hooks, per-user rate limits and sweeping.
//   - [github.com/dglease/dglease/lease/leasehttp]: the browser hand-off
//     endpoint (credential, release, client.js), safe behind a load
//     balancer (optional; linked only when imported).
//   - [github.com/dglease/dglease/lease/leaseredis]: rate limits and caps
//     shared by every replica through Redis (optional).
//   - [github.com/dglease/dglease/lease/leaseotel]: the lease lifecycle as
//     OpenTelemetry metrics (optional; linked only when imported).
//
// This package itself has no code; it documents the module.
package dglease
