package lease_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/internal/testenv"
	"github.com/dglease/dglease/keys"
	"github.com/dglease/dglease/keys/keystest"
	"github.com/dglease/dglease/lease"
)

// After Close, every key is deleted, or it is named in Close's error, for
// every kind of fault the fake can inject on deletes.
func TestCloseAccountsForEveryKeyUnderFaults(t *testing.T) {
	tests := []struct {
		name   string
		inject func(srv *keystest.Server)
		// survive: keys may survive (named in Close's error).
		survive bool
	}{
		{"500 twice", func(s *keystest.Server) { s.Fail(keystest.OpDelete, keystest.Fault{Status: 500, Times: 2}) }, false},
		{"502 twice", func(s *keystest.Server) { s.Fail(keystest.OpDelete, keystest.Fault{Status: 502, Times: 2}) }, false},
		{"503 with Retry-After", func(s *keystest.Server) {
			s.Fail(keystest.OpDelete, keystest.Fault{Status: 503, RetryAfter: 3 * time.Second, Times: 5})
		}, false},
		{"429 with Retry-After", func(s *keystest.Server) {
			s.Fail(keystest.OpDelete, keystest.Fault{Status: 429, RetryAfter: 2 * time.Second, Times: 5})
		}, false},
		{"latency beyond the delete timeout", func(s *keystest.Server) { s.Hang(keystest.OpDelete, 5) }, false},
		{"lost delete answers", func(s *keystest.Server) { s.LoseAnswer(keystest.OpDelete, 5) }, false},
		{"admin key revoked", func(s *keystest.Server) { s.RevokeKey(s.AdminKeyID()) }, true},
		{"503 forever", func(s *keystest.Server) { s.Fail(keystest.OpDelete, keystest.Fault{Status: 503, Times: -1}) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := fake(t)
				m := newManager(t, srv.Client(), lease.WithMaxLeases(100, 100))
				var ls []*lease.Lease
				for range 20 {
					l, err := m.Acquire(context.Background(), "alice")
					require.NoError(t, err)
					ls = append(ls, l)
				}
				tt.inject(srv)
				for _, l := range ls[:10] {
					l.Release()
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				err := m.Close(ctx)
				survivors := liveIDs(srv)
				if !tt.survive {
					require.NoError(t, err)
					assert.Empty(t, survivors)
				} else {
					require.Error(t, err)
					for _, id := range survivors {
						assert.Contains(t, err.Error(), id)
					}
					var ce *lease.CloseError
					require.ErrorAs(t, err, &ce)
					assert.Len(t, ce.Undeleted, len(ls), "every undeleted key is named")
				}
				for _, k := range srv.Keys() {
					assert.LessOrEqual(t, k.Deletes, 1, "at most one successful delete per key")
				}
				assert.Equal(t, 1, len(srv.Keys())-len(ls), "no key created beyond the leases")
			})
		})
	}
}

func TestLogHooksLogEveryEventWithoutSecrets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		var buf testenv.Buffer
		logger := slog.New(slog.NewJSONHandler(&buf, nil))
		m := newManager(t, srv.Client(), lease.WithHooks(lease.LogHooks(logger)), lease.WithMaxLeases(10, 1))
		l, err := m.Acquire(context.Background(), "alice")
		require.NoError(t, err)
		_, err = m.Acquire(context.Background(), "alice")
		require.ErrorIs(t, err, lease.ErrDenied)
		srv.Fail(keystest.OpDelete, keystest.Fault{Status: 503})
		l.Release()
		time.Sleep(time.Second)
		require.NoError(t, m.Close(context.Background()))
		out := buf.String()
		for _, want := range []string{`"msg":"lease acquired"`, `"msg":"lease denied"`, `"msg":"lease error"`, `"msg":"lease ended"`, `"user":"alice"`, `"key_id":"` + l.KeyID() + `"`, `"reason":"released"`, `"event":"denied"`, `"event":"error"`} {
			assert.True(t, strings.Contains(out, want), "the log lacks %s", want)
		}
		testenv.NoSecret(t, "the log", out, l.Secret(), srv.AdminKey())
	})
}

// A create that fails is reported, counted and leaves no slot taken.
func TestCreateFailures(t *testing.T) {
	for _, status := range []int{500, 503, 401, 403} { // 429 is a refusal: TestDeepgramRefusalIsDenied
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := fake(t)
				errs := make(chan lease.Event, 1)
				m := newManager(t, srv.Client(), lease.WithMaxLeases(1, 1), lease.WithHooks(lease.Hooks{OnError: func(e lease.Event) { errs <- e }}))
				srv.Fail(keystest.OpCreate, keystest.Fault{Status: status})
				_, err := m.Acquire(context.Background(), "alice")
				var apiErr *keys.APIError
				require.ErrorAs(t, err, &apiErr)
				assert.Equal(t, status, apiErr.StatusCode)
				synctest.Wait()
				e := <-errs
				assert.Equal(t, "create", e.Op)
				assert.Equal(t, uint64(1), m.Stats().Errors)
				l, err := m.Acquire(context.Background(), "alice")
				require.NoError(t, err, "the failed create freed its slot")
				l.Release()
			})
		})
	}
}

// secretless answers creates with the new key's ID but without its secret,
// as a broken KeyService might.
type secretless struct{ lease.KeyService }

func (s secretless) Create(ctx context.Context, spec keys.Spec) (*keys.Key, error) {
	k, err := s.KeyService.Create(ctx, spec)
	if k != nil {
		k.Secret = ""
	}
	return k, err
}

// A key that exists but came without its secret is no lease, and is
// deleted at once rather than left to its server-side expiry.
func TestCreateAnswerWithoutSecretIsDeleted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		m := newManager(t, secretless{srv.Client()})
		l, err := m.Acquire(context.Background(), "alice")
		require.ErrorContains(t, err, "without its secret")
		assert.Nil(t, l)
		synctest.Wait()
		assert.Empty(t, liveIDs(srv))
		assert.Equal(t, 1, countOps(srv, keystest.OpDelete))
		assert.Zero(t, m.Usage("alice").Live, "no slot stays taken")
	})
}
