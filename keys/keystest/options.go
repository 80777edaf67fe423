package keystest

import (
	"errors"
	"fmt"
	"strings"
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
		if err := checkPathID("project ID", id); err != nil {
			c.setErr(err)
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
		if secret == "" || strings.ContainsFunc(secret, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			c.setErr(errors.New("keystest: admin key must be non-empty and without spaces or control characters"))
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

// checkPathID refuses IDs that cannot be a URL path segment as they are.
func checkPathID(what, id string) error {
	if id == "" || len(id) > 256 {
		return fmt.Errorf("keystest: %s must be 1..256 bytes", what)
	}
	for _, r := range id {
		if r <= ' ' || r >= 0x7f || strings.ContainsRune("/?#%\\", r) {
			return fmt.Errorf("keystest: %s %q contains %q, which cannot be part of a URL path", what, id, r)
		}
	}
	return nil
}
