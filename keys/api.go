package keys

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Grant token TTL bounds accepted by Deepgram.
const (
	MinGrantTTL = time.Second
	MaxGrantTTL = 3600 * time.Second
)

// keyJSON is the api_key object of Deepgram's create and list answers.
type keyJSON struct {
	APIKeyID       string   `json:"api_key_id"`
	Key            string   `json:"key,omitempty"`
	Comment        string   `json:"comment"`
	Scopes         []string `json:"scopes"`
	Tags           []string `json:"tags,omitempty"`
	Created        string   `json:"created"`
	ExpirationDate string   `json:"expiration_date,omitempty"`
}

// toKey converts k. Its error, without the "keys: " prefix, names the time
// field that does not parse and quotes its value through scrub: the answer
// could echo anything, a secret included.
func (k keyJSON) toKey(scrub func(string) string) (Key, error) {
	out := Key{ID: k.APIKeyID, Secret: k.Key, Comment: k.Comment, Scopes: k.Scopes, Tags: k.Tags}
	var err error
	if out.Created, err = parseTime(k.Created, scrub); err != nil {
		return Key{}, fmt.Errorf("created: %w", err)
	}
	if out.Expires, err = parseTime(k.ExpirationDate, scrub); err != nil {
		return Key{}, fmt.Errorf("expiration_date: %w", err)
	}
	return out, nil
}

// parseTime reads an RFC 3339 time; "" is the zero time. Its error
// quotes s through scrub, cut short.
func parseTime(s string, scrub func(string) string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time", cleanScrubbed(s, 64, scrub))
	}
	return t, nil
}

// createRequest is the body of POST /v1/projects/{id}/keys. Built here, not
// by the SDK's CreateKey, which drops tags and sends null scopes.
type createRequest struct {
	Comment    string   `json:"comment"`
	Scopes     []string `json:"scopes"`
	Tags       []string `json:"tags,omitempty"`
	Expiration string   `json:"expiration_date,omitempty"`
	TTLSeconds int64    `json:"time_to_live_in_seconds,omitempty"`
}

// checkSpec validates s against now and returns the request body.
func checkSpec(s Spec, now time.Time) (createRequest, error) {
	req := createRequest{Comment: s.Comment, Tags: s.Tags}
	if len(s.Scopes) == 0 {
		return req, errors.New("keys: spec needs at least one scope (e.g. \"usage:write\")")
	}
	for _, sc := range s.Scopes {
		if sc == "" || strings.TrimSpace(sc) != sc {
			return req, fmt.Errorf("keys: scope %q must be non-empty and without surrounding spaces", sc)
		}
	}
	req.Scopes = s.Scopes
	for _, tag := range s.Tags {
		if err := checkTag("tag", tag); err != nil {
			return req, err
		}
	}
	switch {
	case s.TTL != 0 && !s.ExpiresAt.IsZero():
		return req, errors.New("keys: spec sets both TTL and ExpiresAt; set exactly one")
	case s.TTL < 0:
		return req, fmt.Errorf("keys: TTL %s must be positive", s.TTL)
	case s.TTL > 0:
		req.TTLSeconds = ceilSeconds(s.TTL)
	case !s.ExpiresAt.IsZero():
		if !s.ExpiresAt.After(now) {
			return req, fmt.Errorf("keys: ExpiresAt %s is not in the future", s.ExpiresAt.UTC().Format(time.RFC3339))
		}
		req.Expiration = s.ExpiresAt.UTC().Format(time.RFC3339)
	default:
		return req, errors.New("keys: spec needs a TTL or an ExpiresAt; this package creates no key that never expires")
	}
	return req, nil
}

// Create creates a key (POST /v1/projects/{project}/keys) and returns it
// with its Secret, which Deepgram shows only in this answer.
//
// The spec is checked before any network call. An [*UnusableKeyError] means
// the key was created but the answer lacks its secret or has a time that
// does not parse: delete the key by its KeyID. Any other error that is not
// an [*APIError] (a timeout, a lost connection, an answer that does not
// parse or names no key) leaves it unknown whether the key was created:
// give keys a recognisable comment or tag so they can be found with
// [Client.List].
func (c *Client) Create(ctx context.Context, s Spec) (*Key, error) {
	const op = "create key"
	req, err := checkSpec(s, time.Now())
	if err != nil {
		return nil, err
	}
	project, err := c.Project(ctx)
	if err != nil {
		return nil, err
	}
	var out keyJSON
	if err := c.call(ctx, op, http.MethodPost, "v1/projects/%s/keys", nil, req, &out, project); err != nil {
		return nil, err
	}
	if out.APIKeyID == "" {
		return nil, fmt.Errorf("keys: %s: deepgram answered success without api_key_id; a key may have been created", op)
	}
	if err := c.answerID("api_key_id", out.APIKeyID, out.Key); err != nil {
		return nil, fmt.Errorf("keys: %s: %w; a key may have been created", op, err)
	}
	if out.Key == "" {
		return nil, &UnusableKeyError{KeyID: out.APIKeyID, Err: errors.New("its answer has no secret (key)")}
	}
	k, err := out.toKey(func(s string) string { return strings.ReplaceAll(c.scrub(s), out.Key, redacted) })
	if err != nil {
		return nil, &UnusableKeyError{KeyID: out.APIKeyID, Err: fmt.Errorf("its answer has an unusable %w", err)}
	}
	return &k, nil
}

// Delete deletes the key id (DELETE /v1/projects/{project}/keys/{id}).
// Deleting a key that does not exist (or no longer does) returns an error
// matching [ErrNotFound]: callers cleaning up treat that as done.
func (c *Client) Delete(ctx context.Context, id string) error {
	const op = "delete key"
	if err := checkID("key ID", id); err != nil {
		return err
	}
	project, err := c.Project(ctx)
	if err != nil {
		return err
	}
	var out struct {
		Message string `json:"message"`
	}
	return c.call(ctx, op, http.MethodDelete, "v1/projects/%s/keys/%s", nil, nil, &out, project, id)
}

// List returns the project's keys, active and expired (Deepgram keeps
// expired keys listed until they are deleted), without secrets, in the order
// Deepgram lists them. It asks for each status explicitly (two requests) so
// that no key is missed whatever the default filter is.
func (c *Client) List(ctx context.Context) ([]Key, error) {
	return c.list(ctx, "active", "expired")
}

// ListExpired returns the project's keys that Deepgram reports as expired
// (GET .../keys?status=expired), by Deepgram's clock rather than the local
// one. They no longer authenticate, but stay listed until deleted.
func (c *Client) ListExpired(ctx context.Context) ([]Key, error) {
	return c.list(ctx, "expired")
}

func (c *Client) list(ctx context.Context, statuses ...string) ([]Key, error) {
	project, err := c.Project(ctx)
	if err != nil {
		return nil, err
	}
	var keys []Key
	seen := map[string]bool{}
	for _, status := range statuses {
		op := "list " + status + " keys"
		var out struct {
			APIKeys []struct {
				APIKey keyJSON `json:"api_key"`
			} `json:"api_keys"`
		}
		if err := c.call(ctx, op, http.MethodGet, "v1/projects/%s/keys", map[string][]string{"status": {status}}, nil, &out, project); err != nil {
			return nil, err
		}
		for _, item := range out.APIKeys {
			if item.APIKey.APIKeyID == "" || seen[item.APIKey.APIKeyID] {
				continue
			}
			if err := c.answerID("api_key_id", item.APIKey.APIKeyID, ""); err != nil {
				return nil, fmt.Errorf("keys: %s: %w", op, err)
			}
			seen[item.APIKey.APIKeyID] = true
			k, err := item.APIKey.toKey(c.scrub)
			if err != nil {
				return nil, fmt.Errorf("keys: %s: key %s: %w", op, item.APIKey.APIKeyID, err)
			}
			k.Secret = ""
			keys = append(keys, k)
		}
	}
	return keys, nil
}

// Grant asks Deepgram for a grant token (POST /v1/auth/grant) that lives
// ttl, between [MinGrantTTL] and [MaxGrantTTL], rounded up to a whole
// second. The calling key needs member rights. A grant token cannot be
// revoked: it only expires.
func (c *Client) Grant(ctx context.Context, ttl time.Duration) (*Token, error) {
	const op = "grant token"
	if ttl < MinGrantTTL || ttl > MaxGrantTTL {
		return nil, fmt.Errorf("keys: grant TTL %s is outside %s..%s", ttl, MinGrantTTL, MaxGrantTTL)
	}
	body := struct {
		TTLSeconds int64 `json:"ttl_seconds"`
	}{ceilSeconds(ttl)}
	var out struct {
		AccessToken string  `json:"access_token"`
		ExpiresIn   float64 `json:"expires_in"`
	}
	start := time.Now()
	if err := c.call(ctx, op, http.MethodPost, "v1/auth/grant", nil, body, &out); err != nil {
		return nil, err
	}
	if out.AccessToken == "" || out.ExpiresIn <= 0 {
		return nil, fmt.Errorf("keys: %s: deepgram answered success without access_token or a positive expires_in", op)
	}
	return &Token{Secret: out.AccessToken, Expires: start.Add(time.Duration(out.ExpiresIn * float64(time.Second)))}, nil
}

// ceilSeconds is d in whole seconds, rounded up; d must not be negative.
func ceilSeconds(d time.Duration) int64 {
	secs := int64(d / time.Second)
	if d%time.Second != 0 {
		secs++
	}
	return secs
}
