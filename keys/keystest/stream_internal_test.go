package keystest

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/keys"
)

func TestCheckStreamCredential(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := Start(WithoutListener())
		require.NoError(t, err)
		defer s.Close()
		other, err := Start(WithoutListener())
		require.NoError(t, err)
		defer other.Close()

		usage := s.AddKey(keys.Spec{Scopes: []string{"usage:write"}, TTL: time.Minute})
		member := s.AddKey(keys.Spec{Scopes: []string{"member"}})
		readOnly := s.AddKey(keys.Spec{Scopes: []string{"keys:read", "usage:read"}})
		deleted := s.AddKey(keys.Spec{Scopes: []string{"usage:write"}})
		require.True(t, s.RevokeKey(deleted.ID))
		expiring := s.AddKey(keys.Spec{Scopes: []string{"usage:write"}, TTL: time.Second})
		tok := grantToken(t, s, 60)
		shortTok := grantToken(t, s, 1)
		foreignTok := grantToken(t, other, 60)
		tampered := tok[:len(tok)-2] + "xx"
		time.Sleep(time.Second) // expiring and shortTok expire

		tests := []struct {
			name, scheme, secret string
			ok                   bool
		}{
			{"usage key", "token", usage.Secret, true},
			{"scheme any case", "Token", usage.Secret, true},
			{"member role key", "TOKEN", member.Secret, true},
			{"admin key", "token", s.AdminKey(), true},
			{"key without usage:write", "token", readOnly.Secret, false},
			{"deleted key", "token", deleted.Secret, false},
			{"expired key", "token", expiring.Secret, false},
			{"unknown key", "token", strings.Repeat("a", 40), false},
			{"grant token", "bearer", tok, true},
			{"grant token any case", "Bearer", tok, true},
			{"expired grant token", "bearer", shortTok, false},
			{"other server's grant token", "bearer", foreignTok, false},
			{"tampered grant token", "bearer", tampered, false},
			{"key as bearer", "bearer", usage.Secret, false},
			{"grant token as key", "token", tok, false},
			{"empty", "token", "", false},
			{"unknown scheme", "basic", usage.Secret, false},
		}
		for _, tt := range tests {
			err := s.checkStreamCredential(tt.scheme, tt.secret)
			if tt.ok {
				assert.NoError(t, err, tt.name)
				continue
			}
			if assert.Error(t, err, tt.name) {
				assert.True(t, strings.HasPrefix(err.Error(), "keystest: "), err.Error())
				if tt.secret != "" {
					assert.NotContains(t, err.Error(), tt.secret, tt.name)
				}
			}
		}

		s.Advance(time.Minute)
		assert.Error(t, s.checkStreamCredential("token", usage.Secret), "expired by Advance")
		assert.Error(t, s.checkStreamCredential("bearer", tok), "grant expired by Advance")
	})
}

func grantToken(t *testing.T, s *Server, ttl int) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "POST", s.URL+"/v1/auth/grant", strings.NewReader(`{"ttl_seconds":`+itoa(ttl)+`}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Token "+s.AdminKey())
	res, err := s.Transport().RoundTrip(req)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, 200, res.StatusCode)
	var out struct {
		AccessToken string `json:"access_token"`
	}
	require.NoError(t, json.NewDecoder(res.Body).Decode(&out))
	return out.AccessToken
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

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
