// Package credentials hands a browser a short-lived Deepgram key through
// lease/leasehttp, and, in credentials_test.go, has the tests to copy with
// it. They run against the fake Deepgram of keys/keystest, through
// net/http/httptest, and each shows one technique: asserting the key's
// scopes and TTL on the fake, the release route deleting the key
// (Manager.Flush, then the key's status on the fake), a release on another
// replica, injected Deepgram failures, rate limits, testing/synctest to see
// the TTL delete a key nobody released without waiting, and checking that no
// secret reaches the logs.
//
//	go test ./examples/testing
//
// Wire it up with a Manager and your own sign-in:
//
//	leases, err := lease.New(client, lease.WithHooks(lease.LogHooks(logger)))
//	...
//	h, err := credentials.NewHandler(leases, userFromSession, leasehttp.WithReleaseKey(releaseKey))
//	...
//	mux.Handle("/deepgram/", http.StripPrefix("/deepgram", h))
//
// and in the page:
//
//	import { connect } from '/deepgram/client.js';
//	const ws = await connect({ endpoint: '/deepgram', url: 'wss://api.deepgram.com/v1/listen?model=nova-3' });
//	recorder.ondataavailable = (e) => ws.send(e.data);
//
// connect POSTs /deepgram/credential, opens its WebSocket to Deepgram with
// the key, then POSTs /deepgram/release so the key is deleted at once
// (Deepgram checks a key when the socket opens; the stream outlives it).
// If it never does, the lease's TTL deletes the key. The routes, their
// answers and their errors are leasehttp's; see its package documentation.
package credentials

import (
	"errors"
	"net/http"

	"github.com/dglease/dglease/lease"
	"github.com/dglease/dglease/lease/leasehttp"
)

// errNotSignedIn is identify's answer for a request without a user:
// leasehttp answers it with 401 (and logs it at debug level).
var errNotSignedIn = errors.New("no signed-in user")

// NewHandler serves credentials from m, each for the user userOf finds in
// the request ("" when nobody is signed in, answered with 401). opts are
// leasehttp's: set leasehttp.WithReleaseKey, the same on every replica,
// when several serve the same pages. Mount it with http.StripPrefix.
func NewHandler(m *lease.Manager, userOf func(*http.Request) string, opts ...leasehttp.Option) (*leasehttp.Handler, error) {
	return leasehttp.New(m, func(r *http.Request) (string, error) {
		if user := userOf(r); user != "" {
			return user, nil
		}
		return "", errNotSignedIn
	}, opts...)
}
