package keystest

import (
	"errors"
	"fmt"

	"github.com/dglease/dglease/keys"
)

// Option configures a [Server] built by [NewServer] or [Start]. Options are
// sealed: only this package defines them. Each documents its default. An
// Option is an immutable value: safe to share and reuse.
type Option interface{ apply(*config) error }

type config struct {
	projectID   string
	projectName string
	adminKey    string
	adminScopes []string
	noListener  bool
}

type optionFunc func(*config) error

func (f optionFunc) apply(c *config) error { return f(c) }

// defaultAdminScopes are the scopes of the seeded admin key unless
// [WithAdminScopes] says otherwise: member rights for keys and usage.
var defaultAdminScopes = []string{"keys:read", "keys:write", "usage:read", "usage:write"}

// WithProjectID sets the ID of the server's one project. Default: a random
// UUID-like ID, different for each server.
func WithProjectID(id string) Option {
	return optionFunc(func(c *config) error {
		// The same rule as the client's, so that Server.Client never
		// refuses what the server accepted.
		if id == "" {
			return errors.New("keystest: WithProjectID: project ID must not be empty")
		}
		if _, err := keys.New("x", id); err != nil {
			return fmt.Errorf("keystest: WithProjectID: %w", err)
		}
		c.projectID = id
		return nil
	})
}

// WithProjectName sets the name GET /v1/projects reports. Default:
// "keystest".
func WithProjectName(name string) Option {
	return optionFunc(func(c *config) error {
		c.projectName = name
		return nil
	})
}

// WithAdminKey sets the secret of the seeded admin key (see
// [Server.AdminKey]). Default: 40 random lower-case hex characters, as
// Deepgram's keys.
func WithAdminKey(secret string) Option {
	return optionFunc(func(c *config) error {
		if _, err := keys.New(secret, ""); err != nil { // the client's rule; its error never quotes the key
			return fmt.Errorf("keystest: WithAdminKey: %w", err)
		}
		c.adminKey = secret
		return nil
	})
}

// WithAdminScopes sets the scopes of the seeded admin key. Default:
// "keys:read", "keys:write", "usage:read", "usage:write" (enough to
// create, list and delete keys, to mint grant tokens and to read usage,
// but not to mint role keys such as "member" or "admin"). Pass e.g.
// "owner" for full rights.
func WithAdminScopes(scopes ...string) Option {
	return optionFunc(func(c *config) error {
		if len(scopes) == 0 {
			return errors.New("keystest: WithAdminScopes needs at least one scope")
		}
		for _, sc := range scopes {
			if !knownScope(sc) {
				return fmt.Errorf("keystest: WithAdminScopes: unknown scope %q", sc)
			}
		}
		c.adminScopes = append([]string(nil), scopes...)
		return nil
	})
}

// WithoutListener makes the server open no socket: it is then reachable
// only through [Server.Transport] and [Server.Client], and its URL is
// "http://keystest.invalid", which does not resolve.
//
// Use it inside testing/synctest bubbles: a goroutine waiting on a socket
// is not durably blocked, so a listening server in a bubble stops fake time
// and a time.Sleep (or a key expiry) in that bubble never returns. Default:
// a loopback listener, as net/http/httptest.
func WithoutListener() Option {
	return optionFunc(func(c *config) error {
		c.noListener = true
		return nil
	})
}
