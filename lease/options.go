package lease

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/dglease/dglease/internal/dgtag"
	"github.com/dglease/dglease/keys"
)

// Defaults, each overridable by an option.
const (
	DefaultTTL               = 10 * time.Second
	DefaultExpiryMargin      = 5 * time.Second
	DefaultMaxLeases         = 10000
	DefaultMaxLeasesPerUser  = 10
	DefaultDeleteConcurrency = 512
	DefaultCreateTimeout     = 30 * time.Second
	DefaultDeleteTimeout     = 10 * time.Second
	// MaxTTL bounds WithTTL for API keys: leases are meant to be short.
	MaxTTL = time.Hour
	// MaxUserLen bounds the user ID given to Acquire, in bytes.
	MaxUserLen = 128
)

// DefaultScope is the only scope a leased key gets unless WithScopes says
// otherwise: it may transcribe and speak, nothing else.
const DefaultScope = "usage:write"

// DefaultRateEvery and DefaultBurst are the per-user rate limit (see
// [WithRateLimit]): one Acquire a second on average, five at once.
const (
	DefaultRateEvery = time.Second
	DefaultBurst     = 5
)

// Option configures a [Manager] built by [New]. Options are sealed: only
// this package defines them.
//
// Options are immutable values, safe to share and reuse.
type Option interface{ apply(*config) error }

type optionFunc func(*config) error

func (f optionFunc) apply(c *config) error { return f(c) }

type config struct {
	ttl               time.Duration
	margin            time.Duration
	serverTTL         time.Duration // ttl+margin in whole seconds; set by validate
	scopes            []string
	every             time.Duration
	burst             int
	maxLeases         int
	maxPerUser        int
	maxKeys           int
	hooks             []Hooks
	grant             bool
	deleteConcurrency int
	createTimeout     time.Duration
	deleteTimeout     time.Duration
	sweepInterval     time.Duration
	tags              []string
	scopesSet         bool
	limiter           Limiter
}

func defaultConfig() config {
	return config{
		ttl:               DefaultTTL,
		margin:            DefaultExpiryMargin,
		scopes:            []string{DefaultScope},
		every:             DefaultRateEvery,
		burst:             DefaultBurst,
		maxLeases:         DefaultMaxLeases,
		maxPerUser:        DefaultMaxLeasesPerUser,
		deleteConcurrency: DefaultDeleteConcurrency,
		createTimeout:     DefaultCreateTimeout,
		deleteTimeout:     DefaultDeleteTimeout,
	}
}

// WithTTL sets how long a lease lives before it ends by itself. Default
// [DefaultTTL] (10s); at most [MaxTTL] for API keys, 1s..3600s for grant
// tokens. Every API key also gets a server-side expiry of the TTL plus the
// expiry margin (see [WithExpiryMargin]), so it stops working even if every
// deletion fails.
func WithTTL(d time.Duration) Option {
	return optionFunc(func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("lease: TTL %s must be positive", d)
		}
		c.ttl = d
		return nil
	})
}

// WithExpiryMargin sets how much longer than the lease a key lives on
// Deepgram's side: a grace period for the deleter. Default
// [DefaultExpiryMargin] (5s); 0 to 1h.
func WithExpiryMargin(d time.Duration) Option {
	return optionFunc(func(c *config) error {
		if d < 0 || d > time.Hour {
			return fmt.Errorf("lease: expiry margin %s must be between 0 and 1h", d)
		}
		c.margin = d
		return nil
	})
}

// WithScopes sets the scopes of leased keys. Default [DefaultScope]
// ("usage:write"). Scopes that grant management rights (keys:*, members:*,
// admins:*, owners:*, project:*, billing:*, and the roles member, admin and
// owner) are refused: a leased key goes to an end user.
func WithScopes(scopes ...string) Option {
	return optionFunc(func(c *config) error {
		if len(scopes) == 0 {
			return errors.New("lease: WithScopes needs at least one scope")
		}
		for _, s := range scopes {
			if err := checkScope(s); err != nil {
				return err
			}
		}
		c.scopes = append([]string(nil), scopes...)
		c.scopesSet = true
		return nil
	})
}

// managementPrefixes are scope prefixes that grant rights over the project.
var managementPrefixes = []string{"keys:", "members:", "admins:", "owners:", "project:", "billing:", "scopes:", "invitations:"}

func checkScope(s string) error {
	if s == "" || strings.TrimSpace(s) != s {
		return fmt.Errorf("lease: scope %q must be non-empty and without spaces", s)
	}
	low := strings.ToLower(s)
	switch low {
	case "member", "admin", "owner":
		return fmt.Errorf("lease: scope %q is a role with management rights; a leased key must not carry it", s)
	}
	if strings.Contains(low, "*") {
		return fmt.Errorf("lease: scope %q is a wildcard; name each scope", s)
	}
	for _, p := range managementPrefixes {
		if strings.HasPrefix(low, p) {
			return fmt.Errorf("lease: scope %q grants management rights; a leased key may only use Deepgram (e.g. %q)", s, DefaultScope)
		}
	}
	return nil
}

// WithRateLimit limits each user to one Acquire per every on average, with
// bursts of up to burst at once (a token bucket). Default
// [DefaultRateEvery] (1s) and [DefaultBurst] (5). every == 0 turns the
// limit off. Limits are per Manager, so per process: see the package doc on
// replicas.
func WithRateLimit(every time.Duration, burst int) Option {
	return optionFunc(func(c *config) error {
		if every < 0 {
			return fmt.Errorf("lease: rate limit interval %s must not be negative (0 turns the limit off)", every)
		}
		if burst < 1 {
			return fmt.Errorf("lease: burst %d must be at least 1", burst)
		}
		c.every, c.burst = every, burst
		return nil
	})
}

// WithLimiter keeps the state of the rate limit and caps in l instead of
// in the Manager's own process: lease/leaseredis shares it between
// replicas, so that the limits hold for the whole fleet. The limits
// themselves are still set with WithRateLimit and WithMaxLeases. Default:
// a [NewLocalLimiter] of the Manager's own.
func WithLimiter(l Limiter) Option {
	return optionFunc(func(c *config) error {
		if l == nil {
			return errors.New("lease: WithLimiter needs a Limiter")
		}
		c.limiter = l
		return nil
	})
}

// WithMaxLeases caps the live leases (including Acquire calls in flight) of
// the whole Manager and of each user. Default [DefaultMaxLeases] and
// [DefaultMaxLeasesPerUser]. Acquire beyond a cap is denied with a
// [*DeniedError] (LimitTotalCap or LimitUserCap).
func WithMaxLeases(total, perUser int) Option {
	return optionFunc(func(c *config) error {
		if total < 1 || perUser < 1 {
			return fmt.Errorf("lease: lease caps must be at least 1 (got total %d, per user %d)", total, perUser)
		}
		if perUser > total {
			return fmt.Errorf("lease: per-user cap %d exceeds the total cap %d", perUser, total)
		}
		c.maxLeases, c.maxPerUser = total, perUser
		return nil
	})
}

// WithHooks adds functions called on lease events, e.g.
// WithHooks(LogHooks(logger), metrics, mine): for each event, the hooks
// given run in the order given, and hooks given by several WithHooks
// options run in the order of the options. See [Hooks] for their contract.
// Default: none.
func WithHooks(hooks ...Hooks) Option {
	return optionFunc(func(c *config) error {
		c.hooks = append(c.hooks[:len(c.hooks):len(c.hooks)], hooks...)
		return nil
	})
}

// WithGrantTokens makes Acquire issue Deepgram grant tokens (JWTs from
// /v1/auth/grant) instead of API keys. A grant token cannot be revoked:
// Release ends the lease locally and the token stays usable until it
// expires, so keep the TTL short. Scopes are fixed by Deepgram
// (usage:write) and a token carries no tags: New refuses WithScopes and
// WithTags together with WithGrantTokens. Default: API keys.
func WithGrantTokens() Option {
	return optionFunc(func(c *config) error {
		c.grant = true
		return nil
	})
}

// WithDeleteConcurrency bounds how many deletions run at once. The
// deleter adapts within the bound: it starts at 16 (or n, if smaller),
// grows while deletes succeed and others wait, so that deletion keeps pace
// with a storm of Releases, and halves on 429, 5xx, timeouts and transport
// errors, pausing for a 429's Retry-After. Default
// [DefaultDeleteConcurrency] (512): twice the 256 creates that 256 callers
// keep in flight, so that deletion can work off the backlog a storm leaves
// while the storm goes on. When the bound equals the number of callers
// creating keys at once, deletion only keeps up with creation, and the
// backlog stays until the storm ends (WithMaxKeys refuses Acquire past its
// cap meanwhile): set it to at least twice the number of callers creating
// keys at once. 1 to 1024, so with more than 512 such callers a backlog
// builds during a storm and WithMaxKeys bounds it.
func WithDeleteConcurrency(n int) Option {
	return optionFunc(func(c *config) error {
		if n < 1 || n > 1024 {
			return fmt.Errorf("lease: delete concurrency %d must be between 1 and 1024", n)
		}
		c.deleteConcurrency = n
		return nil
	})
}

// WithMaxKeys caps the keys in existence: live leases and Acquire calls
// in flight, plus keys released but not deleted yet, and keys the deleter
// gave up on until their expiry, each still a working credential until
// deleted or expired on Deepgram's side. Past it, Acquire
// is refused with a [*DeniedError] (LimitKeys, RetryAfter 1s) until the
// deleter catches up: a storm or an attacker cannot grow the set of valid
// credentials without bound. Default: twice the total lease cap
// (WithMaxLeases); at least the total lease cap.
func WithMaxKeys(n int) Option {
	return optionFunc(func(c *config) error {
		if n < 1 {
			return fmt.Errorf("lease: key cap %d must be at least 1", n)
		}
		c.maxKeys = n
		return nil
	})
}

// WithTimeouts bounds each create (which finishes in the background when
// the caller's context ends first) and each delete attempt. Defaults
// [DefaultCreateTimeout] and [DefaultDeleteTimeout].
func WithTimeouts(create, del time.Duration) Option {
	return optionFunc(func(c *config) error {
		if create <= 0 || del <= 0 {
			return fmt.Errorf("lease: timeouts must be positive (got create %s, delete %s)", create, del)
		}
		c.createTimeout, c.deleteTimeout = create, del
		return nil
	})
}

// WithSweepInterval makes the Manager call Sweep every d until Close, in
// addition to any call you make. Failures are reported through
// Hooks.OnError. Default: no periodic sweeping.
func WithSweepInterval(d time.Duration) Option {
	return optionFunc(func(c *config) error {
		if d < time.Second {
			return fmt.Errorf("lease: sweep interval %s is shorter than 1s", d)
		}
		c.sweepInterval = d
		return nil
	})
}

// WithTags adds tags to every leased key, e.g. your service's name, for
// usage attribution in Deepgram's console. Default: only the library's
// marker tags.
func WithTags(tags ...string) Option {
	return optionFunc(func(c *config) error {
		for _, t := range tags {
			if p := dgtag.Problem(t); p != "" {
				return fmt.Errorf("lease: tag %q %s", t, p)
			}
			if strings.HasPrefix(t, markerTag) {
				return fmt.Errorf("lease: tag %q must not start with %q, this library's marker", t, markerTag)
			}
		}
		c.tags = append(c.tags[:len(c.tags):len(c.tags)], tags...)
		return nil
	})
}

func (c *config) validate() error {
	if c.maxKeys == 0 {
		c.maxKeys = c.maxLeases
		if c.maxLeases <= math.MaxInt/2 {
			c.maxKeys = 2 * c.maxLeases
		}
	}
	if c.maxKeys < c.maxLeases {
		return fmt.Errorf("lease: key cap %d is below the total lease cap %d; every live lease holds a key", c.maxKeys, c.maxLeases)
	}
	if c.grant {
		if c.scopesSet || len(c.tags) > 0 {
			return errors.New("lease: WithGrantTokens cannot be combined with WithScopes or WithTags: a grant token's scope is fixed (usage:write) and it carries no tags")
		}
		if c.ttl < keys.MinGrantTTL || c.ttl > keys.MaxGrantTTL {
			return fmt.Errorf("lease: grant token TTL %s is outside %s..%s", c.ttl, keys.MinGrantTTL, keys.MaxGrantTTL)
		}
		return nil
	}
	if c.ttl < time.Second || c.ttl > MaxTTL {
		return fmt.Errorf("lease: TTL %s is outside 1s..%s", c.ttl, MaxTTL)
	}
	// Deepgram takes whole seconds: round up, never shorter than asked.
	c.serverTTL = (c.ttl + c.margin + time.Second - 1).Truncate(time.Second)
	return nil
}
