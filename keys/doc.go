// Package keys is a typed client for Deepgram's key management,
// grant-token and usage APIs, built on the official Go SDK's REST
// plumbing.
//
//	c, err := keys.New(os.Getenv("DEEPGRAM_API_KEY"), projectID)
//	if err != nil { ... }
//	k, err := c.Create(ctx, keys.Spec{
//		Comment: "stream for user 42",
//		Scopes:  []string{"usage:write"},
//		TTL:     30 * time.Second,
//	})
//	if err != nil { ... }
//	defer c.Delete(context.WithoutCancel(ctx), k.ID)
//	use(k.Secret)
//
// [Client.Usage] reads back the audio Deepgram processed, by UTC day,
// optionally only for the requests carrying a tag (a key's tags apply to
// every request made with it) or made with one key:
//
//	u, err := c.Usage(ctx, keys.UsageQuery{Start: t1, End: t2, Tag: "user-42"})
//	if err != nil { ... }
//	fmt.Println(u.Audio(), u.Requests())
//
// Unlike the SDK's own methods, every failure is reported: a non-2xx answer
// is an [*APIError] that matches [ErrNotFound], [ErrUnauthorized],
// [ErrForbidden] or [ErrRateLimited] under errors.Is, and a success whose
// body does not parse is an error too.
//
// The client ignores the SDK's DEEPGRAM_* environment variables
// (DEEPGRAM_HOST, DEEPGRAM_ACCESS_TOKEN, DEEPGRAM_API_VERSION,
// DEEPGRAM_API_PATH, DEEPGRAM_WEBSOCKET_SKIP_AUTH, DEEPGRAM_DEBUG_REST):
// what New is given is what it uses, with "Token" auth and TLS verified, and
// it never prints a secret. Keys, tokens and clients print redacted.
//
// It never retries: a retried create can mint two keys. Callers decide, with
// [APIError.RetryAfter] and [APIError.Temporary].
//
// For tests, [github.com/dglease/dglease/keys/keystest] is a fake Deepgram
// whose Client method returns a *Client wired to it.
package keys
