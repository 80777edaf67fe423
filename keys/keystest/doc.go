// Package keystest is a fake Deepgram for tests: one project, its API keys,
// grant tokens, usage and, over the socket, /v1/listen. Use it like this:
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
//     GET and DELETE /v1/projects/{id}/keys/{key_id} (keys:read, keys:write);
//     GET answers {"item":{"member":{"member_id",...,"api_key":{...}}}},
//     the shape of Deepgram's current reference
//     (https://developers.deepgram.com/reference/manage/keys/get).
//   - POST /v1/auth/grant: an HS256 JWT signed with a per-server secret,
//     with claims sub, jti, iat, exp and scope "usage:write".
//   - GET /v1/projects/{id}/usage (usage:read; a usage:write key gets 403):
//     the audio of the recorded streams, by UTC day, in Deepgram's shape
//     {"start","end","resolution":{"units":"day","amount":1},
//     "results":[{"start","end","hours","total_hours","requests"}]}, with
//     the filters start and end (dates, YYYY-MM-DD, both included;
//     default: the first recorded stream's day and today), tag (repeatable:
//     a stream must carry every one), accessor (a key ID), method
//     (streaming) and endpoint (listen). See "Usage" below.
//   - /v1/listen over WebSocket (socket only: ws:// + Server.URL's host): the
//     credential comes from the Authorization header ("Token <key>",
//     "Bearer <jwt>") or, as browsers send it, the first two entries of the
//     Sec-WebSocket-Protocol list ("token", key / "bearer", jwt; Deepgram's
//     JavaScript SDK adds "x-deepgram-session-id", <uuid>, which is
//     ignored). A key must be live and carry
//     usage:write (directly or through a role); a grant token must be
//     unexpired and signed by this server. Each audio frame is answered with
//     a Deepgram-shaped Results message with a fixed fake transcript,
//     preceded by SpeechStarted (vad_events=true) and an interim Results
//     (interim_results=true) and followed by UtteranceEnd
//     (utterance_end_ms with interim_results=true) when the query asks;
//     CloseStream ends with a Metadata message. Close ends open streams
//     (code 1001). Every stream is recorded for usage when it ends.
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
// [Server.Key] (its [KeyState.Deletes] counts API deletes),
// [Server.Requests] and [Server.Streams]. Everything is per Server:
// there is no package-level state to reset.
//
// # Usage
//
// Each /v1/listen stream is recorded when it ends (on CloseStream, before
// its Metadata message is sent, so a client that has read that message
// finds its stream counted; else when its connection ends) against:
//
//   - its accessor: the ID of the API key that opened it, or, for a grant
//     token, of the key that minted the token;
//   - its tags: the key's tags (a grant token has none), then the tag
//     parameters of its query, as Deepgram applies both;
//   - the UTC day it opened, on the server's clock (time.Now plus
//     [Server.Advance]);
//   - its audio: for raw audio of a fixed sample size (encoding linear16,
//     linear32, mulaw or alaw), bytes received / (bytes per sample ×
//     sample_rate × channels), defaults 16000 Hz and mono, exact to the
//     nanosecond; for anything else (no encoding, i.e. containerised audio
//     such as a browser's WebM, or a compressed encoding such as opus),
//     which the fake does not decode, the wall time from the stream's
//     opening to its last audio frame, on the monotonic clock.
//
// The usage endpoint sums the audio of the matching streams per day and
// answers it in hours (float64: seconds / 3600), hours and total_hours
// alike, and counts each stream as one request, a stream without audio
// included. keys.Client.Usage reads hours back rounded to the millisecond,
// so figures read through it are exact to the millisecond for raw audio.
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
//   - Tags: Deepgram documents "Tags are limited to 128 characters per tag"
//     (https://developers.deepgram.com/docs/tagging) but neither how it
//     counts nor how it refuses. The fake counts UTF-8 bytes, the
//     strictest reading (43 three-byte runes are refused), and refuses a
//     longer tag on create with the closest documented shape: 400 with the
//     legacy body, err_code BAD_REQUEST, as for any invalid create body
//     (Deepgram documents 400 for an invalid request). A tag query
//     parameter of /v1/listen over the limit, or empty, gets 400 before
//     the upgrade, in the same shape.
//   - Comments: Deepgram documents no bound. The fake refuses a comment
//     over [MaxCommentLen] (256) UTF-8 bytes with 400 BAD_REQUEST, twice
//     the tag limit, so that code which writes unbounded text into a
//     comment finds out in a test; Deepgram may accept more, or less.
//   - Asking for a right the creator lacks answers 403
//     INSUFFICIENT_PERMISSIONS (Deepgram documents "401/403").
//   - /v1/auth/grant needs keys:write, directly or through a role, as the
//     reading of "member rights". ttl_seconds may be any JSON number (the
//     reference types it double) from 1 to 3600; Deepgram does not say
//     what it does with a fraction, and the fake drops it: 30.5 gives a
//     token that lives 30 s and expires_in 30, so a token never outlives
//     what was asked. Anything else (0.5, 3600.5, a string) answers 400;
//     an empty body or null means 30. The token's exp is in whole seconds.
//   - GET /v1/projects needs only a valid key (no scope).
//   - GET /v1/projects/{id}/keys/{key_id} answers only the current
//     reference's shape, {"item":{"member":{...,"api_key":{...}}}}, as
//     Deepgram's JavaScript (5.x) and Python SDKs read it; an older page
//     published a flat {"member","api_key"}, which the Go SDK v3 still
//     decodes: its GetKey finds nothing here.
//   - Deleting an unknown or already deleted key answers 404 NOT_FOUND at
//     once. An unknown status filter answers 400. Keys are listed in
//     creation order; all belong to one member.
//   - A /v1/listen stream is checked when it opens only: deleting or
//     expiring its key later does not end it.
//   - /v1/listen takes any number of Sec-WebSocket-Protocol entries after
//     the scheme and the secret and ignores them: Deepgram's JavaScript SDK
//     5.x offers four in a browser ([scheme, secret,
//     "x-deepgram-session-id", <uuid>]) and Deepgram's guide shows two but
//     forbids none. A list whose first entry is not "token" or "bearer"
//     is refused (401), wherever the credential sits in it.
//   - SpeechStarted, interim results and UtteranceEnd follow the audio
//     frames, not speech: each frame is one utterance followed by silence
//     (SpeechStarted at its start, an interim Results with the first half
//     of the words, the final Results, UtteranceEnd at once at its last
//     word's end, whatever utterance_end_ms says). Deepgram sends them
//     when it hears speech start and after utterance_end_ms of silence.
//     UtteranceEnd needs interim_results=true, as Deepgram documents
//     (https://developers.deepgram.com/docs/utterance-end).
//   - Usage: the fake counts a stream the moment it ends; Deepgram's
//     figures appear after a delay it does not document. Its day is the
//     day the stream opened, on the server's clock; Deepgram's bucketing
//     of a stream that crosses midnight is undocumented. Its audio is
//     exact for raw audio and wall time otherwise; Deepgram decodes
//     containers and its rounding is undocumented (its published examples
//     are whole milliseconds). Only days with usage are listed; start and
//     end take dates only (a date-time answers 400) and any other filter
//     (model, deployment, ...) answers 400 rather than be ignored.
//     total_hours equals hours. /usage/breakdown, /usage/fields and
//     /requests are not served (404): GET /usage is the call the Go SDK
//     (v3.6.0) makes, although Deepgram's current reference marks it
//     deprecated. The SDK's GetUsage sends its UsageRequest as the body of
//     the GET, which the fake ignores (Deepgram documents the filters as
//     query parameters only): pass them in the query, through the SDK's
//     interfaces.ParametersContext.
package keystest
