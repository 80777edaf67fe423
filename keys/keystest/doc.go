// Package keystest is a fake Deepgram for tests: one project, its API keys,
// grant tokens and, over the socket, /v1/listen. Use it like this:
//
//	s := keystest.NewServer(t, keystest.WithoutListener()) // closed by t.Cleanup; no socket, so synctest works
//	c := s.Client()                                          // *keys.Client with the admin key, in memory
//	k, err := c.Create(ctx, keys.Spec{Scopes: []string{"usage:write"}, TTL: time.Minute})
//	s.Advance(time.Minute)                                   // k stops authenticating; listed as expired
//	s.Fail(keystest.OpDelete, keystest.Fault{Status: 503})   // the next delete answers 503
//
// Without [WithoutListener] the server also listens on a loopback port
// ([Server.URL]), for the official SDK or any HTTP client; a listening
// server must not be created inside a testing/synctest bubble (a goroutine
// waiting on a socket stops the bubble's fake time).
//
// # What it serves
//
//   - GET /v1/projects: {"projects":[{"project_id","name"}]}, for any valid key.
//   - GET /v1/projects/{id}/keys[?status=active|expired] (keys:read),
//     POST /v1/projects/{id}/keys (keys:write),
//     GET and DELETE /v1/projects/{id}/keys/{key_id} (keys:read, keys:write).
//   - POST /v1/auth/grant: an HS256 JWT signed with a per-server secret,
//     with claims sub, jti, iat, exp and scope "usage:write".
//   - /v1/listen over WebSocket (socket only: ws:// + Server.URL's host): the
//     credential comes from the Authorization header ("Token <key>",
//     "Bearer <jwt>") or, as browsers send it, the Sec-WebSocket-Protocol
//     list ("token", key / "bearer", jwt). A key must be live and carry
//     usage:write (directly or through a role); a grant token must be
//     unexpired and signed by this server. Each audio frame is answered with
//     a Deepgram-shaped Results message with a fixed fake transcript;
//     CloseStream ends with a Metadata message. Close ends open streams
//     (code 1001).
//
// Every call must carry "Authorization: Token <key>" (any case of the
// scheme). Roles used as scopes expand: "member" grants project:read,
// project:write, keys:read, keys:write, usage:read and usage:write;
// "admin" adds members, admins and owners:read and billing:read; "owner"
// adds project:write:settings, project:destroy, owners:write and
// billing:write. A key is never created with a right its creator lacks.
// Keys stop authenticating at their expiry, on the server's clock
// (time.Now plus [Server.Advance]), and stay listed as expired until
// deleted.
//
// Faults are injected per call kind ([Op]) with [Server.Fail],
// [Server.SetLatency], [Server.Hang] and [Server.LoseAnswer]; what
// happened is read back with [Server.Keys], [Server.LiveKeys],
// [Server.Key] (its [KeyState.Deletes] counts API deletes) and
// [Server.Requests]. Everything is per Server:
// there is no package-level state to reset.
//
// # Where the fake differs from Deepgram
//
// Deepgram leaves these undocumented; the fake picks the stricter choice:
//
//   - Error bodies: the Manage API (/v1/projects...) answers the legacy
//     shape {"err_code","err_msg","request_id"}; /v1/auth/grant answers the
//     current shape {"category","message","details","request_id"}, 405
//     METHOD_NOT_ALLOWED (with Allow) included. Unknown routes answer 404
//     NOT_FOUND, legacy-shaped. Every answer has a JSON body and a
//     dg-request-id header. Codes used: INVALID_AUTH (401),
//     INSUFFICIENT_PERMISSIONS (403), PROJECT_NOT_FOUND and NOT_FOUND (404),
//     BAD_REQUEST (400).
//   - A grant token (Bearer) is refused with 401 by the Manage API and by
//     /v1/auth/grant itself.
//   - Creating a key with both time_to_live_in_seconds and expiration_date
//     answers 400, as do a TTL <= 0 (or above 100 years), an expiration
//     date not in the future or not RFC 3339 with a zone, empty scopes, an
//     unknown scope, an empty tag, bad JSON and trailing data. Without either
//     a key never expires, as on Deepgram.
//   - Asking for a right the creator lacks answers 403
//     INSUFFICIENT_PERMISSIONS (Deepgram documents "401/403").
//   - /v1/auth/grant needs keys:write, directly or through a role, as the
//     reading of "member rights". ttl_seconds outside 1..3600 answers 400;
//     an empty body means 30. The token's exp is in whole seconds.
//   - GET /v1/projects needs only a valid key (no scope).
//   - GET /v1/projects/{id}/keys/{key_id} answers the flat
//     {"member","api_key"} shape; which published shape is live is unknown.
//   - Deleting an unknown or already deleted key answers 404 NOT_FOUND at
//     once. An unknown status filter answers 400. Keys are listed in
//     creation order; all belong to one member.
//   - A /v1/listen stream is checked when it opens only: deleting or
//     expiring its key later does not end it.
package keystest
