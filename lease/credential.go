package lease

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dglease/dglease/keys"
)

// KeyService is what a Manager needs from Deepgram. *keys.Client implements
// it; so does a client of keys/keystest's fake. Implementations must be safe
// for concurrent use, must honour their context, and must not retry creates
// by themselves. Their errors reach Acquire's error, Event.Err and Close's
// report as they are: like *keys.Client's, they must carry no secret.
type KeyService interface {
	Create(ctx context.Context, s keys.Spec) (*keys.Key, error)
	Delete(ctx context.Context, id string) error
	List(ctx context.Context) ([]keys.Key, error)
	Grant(ctx context.Context, ttl time.Duration) (*keys.Token, error)
}

// credential is the one place where API keys and grant tokens differ.
type credential interface {
	// issue creates the credential for r, asked for at start, and sets
	// r.secret and r.serverExpires (the latest the credential can work
	// until). It sets r.keyID as soon as a key exists, even when it then
	// fails, so that the key is deleted. It returns the earliest the
	// credential can stop working, and when the answer came (the clock is
	// read once per call: clock reads were a measurable share of a
	// lease's own cost).
	issue(ctx context.Context, r *record, start time.Time) (usableUntil, end time.Time, err error)
	// revocable reports whether the credential can be deleted.
	revocable() bool
	// scheme is the WebSocket subprotocol scheme a browser sends the
	// credential with: "token" or "bearer".
	scheme() string
}

// apiKeys issues API keys, marked and tagged, that expire by themselves
// serverTTL after their creation.
type apiKeys struct {
	api       KeyService
	managerID string
	mgrTag    string // the marker's manager tag, built once
	scopes    []string
	tags      []string
	serverTTL time.Duration
}

func (c *apiKeys) revocable() bool { return true }
func (c *apiKeys) scheme() string  { return "token" }

func (c *apiKeys) issue(ctx context.Context, r *record, start time.Time) (time.Time, time.Time, error) {
	// The marker (see Marker), from parts built once per Manager and per
	// user.
	mk := r.us.markers()
	k, err := c.api.Create(ctx, keys.Spec{
		Comment: markerComment(r.leaseID, c.managerID, mk.commentField),
		Scopes:  c.scopes,
		Tags:    append(markerTags(r.leaseID, c.mgrTag, mk.tag, len(c.tags)), c.tags...),
		TTL:     c.serverTTL,
	})
	// Deepgram made the key between start and end: it stops working
	// serverTTL after a moment in between.
	end := time.Now()
	usableUntil, latest := start.Add(c.serverTTL), end.Add(c.serverTTL)
	var unusable *keys.UnusableKeyError
	if errors.As(err, &unusable) && unusable.KeyID != "" {
		r.keyID, r.serverExpires = unusable.KeyID, latest
		return time.Time{}, end, err
	}
	if err != nil {
		return time.Time{}, end, err
	}
	if k == nil || k.ID == "" {
		return time.Time{}, end, errors.New("lease: create returned no key")
	}
	r.keyID, r.serverExpires = k.ID, latest
	if k.Expires.After(latest) {
		r.serverExpires = k.Expires
	}
	if k.Secret == "" {
		return time.Time{}, end, fmt.Errorf("lease: create returned key %s without its secret", k.ID)
	}
	// The string alone, so that the lease keeps the secret alive, not the
	// whole answer (comment, tags, scopes).
	r.secret = k.Secret
	return usableUntil, end, nil
}

// grantTokens issues grant tokens: one call, nothing to delete.
type grantTokens struct {
	api KeyService
	ttl time.Duration
}

func (c *grantTokens) revocable() bool { return false }
func (c *grantTokens) scheme() string  { return "bearer" }

func (c *grantTokens) issue(ctx context.Context, r *record, _ time.Time) (time.Time, time.Time, error) {
	tok, err := c.api.Grant(ctx, c.ttl)
	end := time.Now()
	if err != nil {
		return time.Time{}, end, err
	}
	if tok == nil || tok.Secret == "" {
		return time.Time{}, end, errors.New("lease: grant returned no token")
	}
	r.secret, r.serverExpires = tok.Secret, tok.Expires
	return tok.Expires, end, nil
}
