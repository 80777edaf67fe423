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
//	if err != nil { ... }                     // *DeniedError (ErrRateLimited) says when to retry
//	defer l.Release()                         // returns at once; deletion is retried in the background
//	streamWith(l.Secret())
//
// # How deletion is guaranteed
//
// A lease ends, and its key is handed to the Manager's background deleter,
// on whichever comes first:
//
//  1. Release (idempotent, returns at once, never touches the network);
//  2. the context given to Acquire ending (context.AfterFunc);
//  3. the lease's TTL passing (one timer per lease, no goroutine);
//  4. the *Lease becoming unreachable without Release (runtime.AddCleanup):
//     a caller bug, reported through Hooks.OnLeak. The lease ends at the
//     Manager's next call or at its TTL, whichever comes first (the
//     runtime's cleanup goroutine only queues it, so that this path is safe
//     inside testing/synctest bubbles too);
//  5. Manager.Close, which also waits for the deleter and names every key
//     it could not delete;
//  6. Sweep, which deletes expired keys carrying this library's marker left
//     by any process, e.g. one that was killed.
//
// The deleter runs a bounded number of deletes at once and retries failures
// with jittered exponential backoff, honouring Retry-After. "Not found"
// counts as deleted. 401 and 403 are not retried: they are reported through
// Hooks.OnError and Close. Every key is also created with a server-side
// expiry (the TTL plus a margin), so a key stops working even if every
// deletion fails; the deleter stops retrying at that point and Sweep
// removes the record later.
//
// If the context given to Acquire ends while the key is being created, the
// create finishes in the background and the key is deleted on arrival.
//
// # Handing a credential to a browser
//
// The HTTP request's context ends when the handler returns, which would
// end the lease before the browser can use it. Pass
// context.WithoutCancel(r.Context()) to Acquire, return l.Secret() with
// Cache-Control: no-store, and Release the lease when the browser reports
// its WebSocket open (Deepgram checks a credential when the socket opens, so
// the stream outlives the key) or let the TTL end it. Either keep the *Lease
// until then (a dropped *Lease counts as leaked and is ended early), or call
// l.Detach() and later Manager.Release(leaseID) after checking
// Manager.Owner(leaseID).
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
// scope. It cannot be revoked: Release ends the lease locally and the token
// works until its TTL passes, so keep the TTL short. Rate limits, caps,
// hooks and usage counters apply the same way.
//
// # Several replicas
//
// Sweep is stateless and safe from any number of replicas: it only deletes
// expired keys carrying the marker, whoever created them. Rate limits, caps
// and usage counters are per Manager, i.e. per process: with N replicas a
// user can get N times the rate unless requests are routed by user.
//
// # Hooks and usage
//
// WithHooks(LogHooks(logger)) logs every event; Manager.Usage and
// Manager.Stats return counters. Hooks run on their own goroutine: a slow
// or panicking hook never stalls a caller or the deleter. Events never
// carry a secret, and a Lease prints redacted.
package lease
