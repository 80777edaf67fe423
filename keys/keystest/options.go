package keystest

import (
	"errors"
	"fmt"

	"github.com/dglease/dglease/keys"
)

// Option configures a [Server] built by [NewServer] or [Start]. Options are
// sealed: only this package defines them. Each documents its default. An
// Option is an immutable value: safe to share and reuse.
type Option interface{ apply(*config) }

type config struct {
	projectID   string
	projectName string
	adminKey    string
	adminScopes []string
	noListener  bool
	err         error
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// defaultAdminScopes are the scopes of the seeded admin key unless
// [WithAdminScopes] says otherwise: member rights for keys and usage.
var defaultAdminScopes = []string{"keys:read", "keys:write", "usage:write"}

// WithProjectID sets the ID of the server's one project. Default: a random
// UUID-like ID, different for each server.
func WithProjectID(id string) Option {
	return optionFunc(func(c *config) {
		// The same rule as the client's, so that Server.Client never
		// refuses what the server accepted.
		if id == "" {
			c.setErr(errors.New("keystest: WithProjectID: project ID must not be empty"))
			return
		}
		if _, err := keys.New("x", id); err != nil {
			c.setErr(fmt.Errorf("keystest: WithProjectID: %w", err))
			return
		}
		c.projectID = id
	})
}

// WithProjectName sets the name GET /v1/projects reports. Default:
// "keystest".
func WithProjectName(name string) Option {
	return optionFunc(func(c *config) { c.projectName = name })
}

// WithAdminKey sets the secret of the seeded admin key (see
// [Server.AdminKey]). Default: 40 random lower-case hex characters, as
// Deepgram's keys.
func WithAdminKey(secret string) Option {
	return optionFunc(func(c *config) {
		if _, err := keys.New(secret, ""); err != nil { // the client's rule; its error never quotes the key
			c.setErr(fmt.Errorf("keystest: WithAdminKey: %w", err))
			return
		}
		c.adminKey = secret
	})
}

// WithAdminScopes sets the scopes of the seeded admin key. Default:
// "keys:read", "keys:write", "usage:write" (enough to create, list and
// delete keys and to mint grant tokens, but not to mint role keys such as
// "member" or "admin"). Pass e.g. "owner" for full rights.
func WithAdminScopes(scopes ...string) Option {
	return optionFunc(func(c *config) {
		if len(scopes) == 0 {
			c.setErr(errors.New("keystest: WithAdminScopes needs at least one scope"))
			return
		}
		for _, sc := range scopes {
			if !knownScope(sc) {
				c.setErr(fmt.Errorf("keystest: WithAdminScopes: unknown scope %q", sc))
				return
			}
		}
		c.adminScopes = append([]string(nil), scopes...)
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
	return optionFunc(func(c *config) { c.noListener = true })
}

func (c *config) setErr(err error) {
	if c.err == nil {
		c.err = err
	}
}
