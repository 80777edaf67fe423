package lease

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dglease/dglease/internal/dgday"
	"github.com/dglease/dglease/keys"
)

// UsageReader reads a project's usage from Deepgram. *keys.Client
// implements it; its API key needs usage:read (a member key has it; the
// usage:write keys a Manager leases do not). Implementations must be safe
// for concurrent use.
type UsageReader interface {
	Usage(ctx context.Context, q keys.UsageQuery) (*keys.Usage, error)
}

// AudioUsage is how much audio one user streamed, as Deepgram reports it:
// the answer of [StreamedAudio].
type AudioUsage struct {
	// User is the user asked about, and Tag the tag Deepgram counted
	// ([UserTag]).
	User, Tag string
	// Start and End are the first and last day counted, at 00:00 UTC:
	// Deepgram keeps usage by UTC day.
	Start, End time.Time
	// Audio is the audio streamed, to the millisecond.
	Audio time.Duration
	// Requests counts the requests made with the user's keys: each stream
	// is one.
	Requests int
}

// StreamedAudio answers "how much audio did user stream between start and
// end": it asks Deepgram for the usage of the requests carrying the user's
// tag ([UserTag]), which every API key leased to user carries and which
// Deepgram applies to every request made with it. One call, from any
// process: the tag depends on the user alone, whichever Manager leased the
// keys.
//
// Deepgram keeps usage by UTC day, so the answer covers every whole UTC
// day from start's to end's, both included; AudioUsage.Start and End say
// which. Read it with these limits in mind:
//
//   - Deepgram's figures lag behind the service by a delay it does not
//     document: a stream that has just ended may not be counted yet.
//     (keys/keystest counts a stream as soon as it ends.)
//   - Grant tokens carry no tags: a Manager built WithGrantTokens leaves
//     nothing to count, and StreamedAudio reports zero.
//   - Deepgram also applies the tag parameters of a request's query,
//     which whoever holds the key chooses: a user can book their own audio
//     under another user's tag and so raise (never lower) that user's
//     figure. Treat it as attribution, not as proof; Deepgram's request
//     log names the key (the accessor) of each request.
//
// r reads the usage: typically a *keys.Client whose key has usage:read,
// which may be another client than the Manager's (least privilege). Errors
// are prefixed "lease: " and wrap r's ([keys.ErrForbidden] when its key
// lacks usage:read). StreamedAudio is safe for concurrent use.
func StreamedAudio(ctx context.Context, r UsageReader, user string, start, end time.Time) (AudioUsage, error) {
	out := AudioUsage{User: user}
	if ctx == nil {
		return out, errors.New("lease: StreamedAudio needs a non-nil context")
	}
	if r == nil {
		return out, errors.New("lease: StreamedAudio needs a UsageReader (a *keys.Client whose key has usage:read)")
	}
	if c, ok := r.(*keys.Client); ok && c == nil {
		return out, errors.New("lease: StreamedAudio was given a nil *keys.Client")
	}
	tag, err := UserTag(user)
	if err != nil {
		return out, err
	}
	out.Tag = tag
	u, err := r.Usage(ctx, keys.UsageQuery{Start: start, End: end, Tag: tag})
	if errors.Is(err, keys.ErrForbidden) {
		return out, fmt.Errorf("lease: streamed audio of user %q: the usage reader's key needs usage:read: %w", user, err)
	}
	if err != nil {
		return out, fmt.Errorf("lease: streamed audio of user %q: %w", user, err)
	}
	if u == nil {
		return out, fmt.Errorf("lease: streamed audio of user %q: the usage reader returned no usage", user)
	}
	out.Start, out.End = u.Start, u.End
	if out.Start.IsZero() && !start.IsZero() {
		out.Start = dgday.Of(start)
	}
	if out.End.IsZero() && !end.IsZero() {
		out.End = dgday.Of(end)
	}
	out.Audio, out.Requests = u.Audio(), u.Requests()
	return out, nil
}
