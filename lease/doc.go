// Package lease hands out short-lived, least-privilege Deepgram credentials
// and guarantees they are deleted.
//
//	client, err := keys.New(os.Getenv("DEEPGRAM_API_KEY"), projectID)
//	if err != nil { ... }
//	leases, err := lease.New(client)          // usage:write keys that live 10s
//	if err != nil { ... }
//	defer leases.Close(context.Background())  // deletes whatever is left
//	leases.Sweep(ctx)                         // at start-up: clean up after a crash
//
//	l, err := leases.Acquire(ctx, userID)     // rate-limited per user
//	if err != nil { ... }                     // a *DeniedError (ErrDenied) says when to retry
//	defer l.Release()                         // returns at once; deletion is retried in the background
//	streamWith(l.Secret())
//
// To test code that uses a Manager, build it on keys/keystest's fake
// Deepgram; examples/testing in this module shows a leasehttp handler with
// its tests, each showing one technique (synctest bubbles, faults, Flush).
//
// # How deletion is guaranteed
//
// A lease ends, and its key is handed to the Manager's background deleter,
// on whichever comes first:
//
//  1. Release (idempotent, never touches the network);
//  2. the context given to Acquire ending (context.AfterFunc);
//  3. the lease's TTL passing (one timer per Manager for all its leases, no
//     goroutine per lease);
//  4. every copy of the Lease becoming unreachable without Release
//     (runtime.AddCleanup): a caller bug, reported through Hooks.OnLeak.
//     The Manager ends such a lease within about a second of the
//     collector finding it, with no call needed from anyone;
//  5. Manager.Close, which also waits for the deleter and names every key
//     it could not delete;
//  6. Sweep, which deletes expired keys carrying this library's marker left
//     by any process, e.g. one that was killed.
//
// The deleter adapts how many deletes run at once: it grows while deletes
// succeed and others wait, so that deletion keeps pace with a storm of
// Releases, and halves on 429, 5xx and timeouts, within
// WithDeleteConcurrency. Keys in existence, live or waiting to be deleted,
// are capped (WithMaxKeys): past the cap Acquire is refused (LimitKeys)
// until the deleter catches up. It retries failures with jittered
// exponential backoff, honouring Retry-After. "Not found"
// counts as deleted. 401 and 403 are not retried: they are reported through
// Hooks.OnError and Close. Every key is also created with a server-side
// expiry (the TTL plus a margin), so a key stops working even if every
// deletion fails; no retry waits past that expiry (the deleter gives up
// instead, and Sweep removes the record later), so Close never waits on a
// key that is about to stop working anyway.
//
// If the context given to Acquire ends while the key is being created, the
// create finishes in the background and the key is deleted on arrival. A
// key whose create answer names it but cannot be used is deleted at once.
// Deletion is asynchronous: Manager.Flush waits for it, e.g. in a test
// before asserting on the fake.
//
// # Handing a credential to a browser
//
// Package [github.com/dglease/dglease/lease/leasehttp] does it: an
// http.Handler on a Manager that serves POST /credential and POST /release
// (signed release handles, verified by any replica sharing the release
// key) and GET /client.js, whose connect({endpoint, url}) gives a page an open
// Deepgram WebSocket in three lines. Mobile apps and workers in any
// language use the same two routes.
//
// Writing your own endpoint instead: wrap its POST routes in
// http.CrossOriginProtection (or any page on the web can mint credentials
// for a signed-in visitor and spend their limits); the request's context
// ends when the handler returns, so pass context.WithoutCancel(r.Context())
// to Acquire;
// call l.Detach(), since a dropped *Lease counts as leaked and its key is
// deleted within a second; answer l.Subprotocol() (the WebSocket
// subprotocol list a browser opens Deepgram with) and l.ID() with
// Cache-Control: no-store. When the page reports its WebSocket open
// (Deepgram checks a credential when the socket opens, so the stream
// outlives the key), release the lease with Manager.Release after checking
// Manager.Owner, or let the TTL end it; a replica that did not issue it
// can delete its key with Manager.ReleaseForeign, given the lease's fields
// from something it can trust (leasehttp signs them). Answer a *DeniedError
// with 429 and its RetryAfter, whichever limit refused, Deepgram's
// included. See the Lease.Detach example.
//
// # API keys or grant tokens?
//
// By default a lease is an API key: it can be revoked (deleted) the moment
// the stream is open, carries exactly the scopes you choose, and carries
// tags that attribute usage to the user in Deepgram's console. It costs two
// calls (create, delete) and needs a key with keys:write.
//
// With WithGrantTokens a lease is a grant token (a JWT from /v1/auth/grant):
// one call, Deepgram's recommended path for browsers, fixed usage:write
// scope. It cannot be revoked (Lease.Revocable reports false): Release ends
// the lease locally and the token works until its TTL passes, so keep the
// TTL short. Rate limits, caps, hooks and usage counters apply the same way.
//
// # Several replicas
//
// Sweep is stateless and safe from any number of replicas: it only deletes
// expired keys carrying the marker, whoever created them. Rate limits and
// caps keep their state in the Manager's Limiter: in the process by
// default (with N replicas a user can get N times the rate unless requests
// are routed by user), or shared by every replica with
// WithLimiter(leaseredis.New(rdb)) (lease/leaseredis). Usage counters,
// hooks and the deleter are per Manager.
//
// # Attribution: each user's audio
//
// Every API key a Manager leases carries its user's tag ([UserTag]):
// "dglease:user=<escaped user>", or, when that would exceed Deepgram's
// 128-character tag limit, "dglease:user-sha256=<digest>". Deepgram
// applies a key's tags to every request made with it, so the audio each
// user streamed is on its books under that tag, whichever Manager, replica
// or process leased the keys. [StreamedAudio] reads it back in one call,
// through a client whose key has usage:read:
//
//	got, err := lease.StreamedAudio(ctx, usageClient, userID, start, end)
//	fmt.Println(got.Audio, got.Requests) // by whole UTC days, as Deepgram counts
//
// Grant tokens carry no tags: their audio cannot be attributed.
//
// # Hooks and usage
//
// WithHooks(LogHooks(logger), metrics, mine) logs every event and calls
// your own hooks too; Manager.Usage and Manager.Stats return counters.
// Hooks run synchronously where their event happens, before the call that
// caused it returns, so none is ever dropped or reordered; they must be
// quick. A hook that panics is recovered and counted. Events never carry a
// secret, and a Lease prints redacted.
//
// # Memory at scale
//
// A live lease costs about 400 bytes, and about 1 KiB when each Acquire is
// given its own cancellable context. A user's counters, its key labels
// and, with the default limiter, its token bucket are kept at least an
// hour after its last lease ends: about 550 bytes per user with API keys
// (up to about 700 for 128-byte user IDs), about 400 with grant tokens,
// plus the user ID itself, so a million users seen within the hour hold
// about half a gigabyte. No call scans that state: it is forgotten only as
// new users arrive, each Acquire for a new user forgetting at most four
// users idle for over an hour from each of the Manager's and the default
// limiter's tables. On two CPUs, a heap that size lets Go's collector
// delay a goroutine by up to about 20 ms while it marks (golang/go#21698);
// BENCHMARKS.md has the figures.
package lease
