// Package stubkeys is an instant, in-memory KeyService for benchmarks: it
// answers at once, with what keys.Client returns for a real answer, so that
// a benchmark measures the code around the calls, not the calls.
package stubkeys

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dglease/dglease/keys"
)

// Service implements lease.KeyService. Create returns a fresh
// 40-character secret and the key's comment, scopes, tags and times, each
// its own allocation, as keys.Client.Create does; Delete always succeeds.
// Safe for concurrent use; the zero value is ready.
type Service struct{ n atomic.Int64 }

// Create returns a new key for s at once.
func (s *Service) Create(_ context.Context, spec keys.Spec) (*keys.Key, error) {
	id := s.n.Add(1)
	now := time.Now()
	return &keys.Key{
		ID:      fmt.Sprintf("%08x-0000-4000-8000-%012x", id, id), // a UUID, as Deepgram's
		Secret:  fmt.Sprintf("%040x", id),
		Comment: strings.Clone(spec.Comment),
		Scopes:  slices.Clone(spec.Scopes),
		Tags:    slices.Clone(spec.Tags),
		Created: now,
		Expires: now.Add(spec.TTL),
	}, nil
}

// Delete succeeds at once.
func (s *Service) Delete(context.Context, string) error { return nil }

// List returns nothing.
func (s *Service) List(context.Context) ([]keys.Key, error) { return nil, nil }

// Grant returns a token that lives ttl.
func (s *Service) Grant(_ context.Context, ttl time.Duration) (*keys.Token, error) {
	id := s.n.Add(1)
	return &keys.Token{Secret: fmt.Sprintf("eyJ.%d.sig", id), Expires: time.Now().Add(ttl)}, nil
}
