package keystest

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/internal/fakelisten"
	"github.com/dglease/dglease/keys"
)

func TestCheckStreamCredential(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewServer(t, WithoutListener())
		other := NewServer(t, WithoutListener())

		usage := s.AddKey(keys.Spec{Scopes: []string{"usage:write"}, TTL: time.Minute})
		member := s.AddKey(keys.Spec{Scopes: []string{"member"}})
		readOnly := s.AddKey(keys.Spec{Scopes: []string{"keys:read", "usage:read"}})
		deleted := s.AddKey(keys.Spec{Scopes: []string{"usage:write"}})
		require.True(t, s.RevokeKey(deleted.ID))
		expiring := s.AddKey(keys.Spec{Scopes: []string{"usage:write"}, TTL: time.Second})
		tok := grant(t, s, time.Minute)
		shortTok := grant(t, s, time.Second)
		foreignTok := grant(t, other, time.Minute)
		tampered := tok[:len(tok)-2] + "xx"
		time.Sleep(time.Second) // expiring and shortTok expire

		const token, bearer = fakelisten.SchemeToken, fakelisten.SchemeBearer
		tests := []struct {
			name, scheme, secret string
			ok                   bool
		}{
			{"usage key", token, usage.Secret, true},
			{"member role key", token, member.Secret, true},
			{"admin key", token, s.AdminKey(), true},
			{"key without usage:write", token, readOnly.Secret, false},
			{"deleted key", token, deleted.Secret, false},
			{"expired key", token, expiring.Secret, false},
			{"unknown key", token, strings.Repeat("a", 40), false},
			{"grant token", bearer, tok, true},
			{"expired grant token", bearer, shortTok, false},
			{"other server's grant token", bearer, foreignTok, false},
			{"tampered grant token", bearer, tampered, false},
			{"key as bearer", bearer, usage.Secret, false},
			{"grant token as key", token, tok, false},
			{"scheme fakelisten does not pass", "basic", usage.Secret, false},
		}
		for _, tt := range tests {
			account, err := s.checkStreamCredential(tt.scheme, tt.secret)
			if tt.ok {
				assert.NoError(t, err, tt.name)
				assert.NotEmpty(t, account, tt.name)
				continue
			}
			assert.Empty(t, account, tt.name)
			if assert.Error(t, err, tt.name) {
				assert.True(t, strings.HasPrefix(err.Error(), "keystest: "), err.Error())
				assert.NotContains(t, err.Error(), tt.secret, tt.name)
			}
		}

		s.Advance(time.Minute)
		_, err := s.checkStreamCredential(token, usage.Secret)
		assert.Error(t, err, "expired by Advance")
		_, err = s.checkStreamCredential(bearer, tok)
		assert.Error(t, err, "grant expired by Advance")
	})
}

// grant mints a grant token of s that lives ttl.
func grant(t *testing.T, s *Server, ttl time.Duration) string {
	t.Helper()
	tok, err := s.Client().Grant(t.Context(), ttl)
	require.NoError(t, err)
	return tok.Secret
}

func TestRightsExpandRoles(t *testing.T) {
	tests := []struct {
		creator, requested []string
		ok                 bool
	}{
		{[]string{"owner"}, []string{"admin"}, true},
		{[]string{"owner"}, []string{"billing:write", "member"}, true},
		{[]string{"admin"}, []string{"owner"}, false},
		{[]string{"admin"}, []string{"billing:read", "members:write"}, true},
		{[]string{"admin"}, []string{"billing:write"}, false},
		{[]string{"member"}, []string{"admin"}, false},
		{[]string{"member"}, []string{"usage:write", "keys:write"}, true},
		{[]string{"keys:read", "keys:write", "usage:write"}, []string{"member"}, false},
		{[]string{"keys:write"}, []string{"usage:write"}, false},
	}
	for _, tt := range tests {
		_, ok := rightsOf(tt.creator).covers(tt.requested)
		assert.Equal(t, tt.ok, ok, "%v creates %v", tt.creator, tt.requested)
	}
}
