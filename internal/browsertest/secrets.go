package browsertest

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/dglease/dglease/keys"
	"github.com/dglease/dglease/lease"
)

// SecretRecorder is a lease.KeyService that remembers the secret of every
// API key and grant token it issued, which a fake never shows again: a
// test can use them, or check with NoSecret that none reached a log or a
// browser's console. Safe for concurrent use.
type SecretRecorder struct {
	lease.KeyService

	mu   sync.Mutex
	seen []string
}

// Create creates the key and records its secret.
func (r *SecretRecorder) Create(ctx context.Context, s keys.Spec) (*keys.Key, error) {
	k, err := r.KeyService.Create(ctx, s)
	if err == nil {
		r.record(k.Secret)
	}
	return k, err
}

// Grant issues the token and records its secret.
func (r *SecretRecorder) Grant(ctx context.Context, ttl time.Duration) (*keys.Token, error) {
	tok, err := r.KeyService.Grant(ctx, ttl)
	if err == nil {
		r.record(tok.Secret)
	}
	return tok, err
}

func (r *SecretRecorder) record(secret string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, secret)
}

// Secrets returns the secrets issued so far, in order.
func (r *SecretRecorder) Secrets() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seen)
}
