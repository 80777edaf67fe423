package keystest_test

import (
	"context"
	"fmt"
	"regexp"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/internal/testenv"
	"github.com/dglease/dglease/keys"
	"github.com/dglease/dglease/keys/keystest"
)

var hex40 = regexp.MustCompile(`^[0-9a-f]{40}$`)

func TestClientRoundTrip(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := memServer(t)
		c := s.Client()
		ctx := t.Context()

		k, err := c.Create(ctx, keys.Spec{Comment: "user 42", Scopes: []string{"usage:write"}, Tags: []string{"browser"}, TTL: time.Minute})
		require.NoError(t, err)
		assert.Regexp(t, hex40, k.Secret)
		assert.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`, k.ID)
		assert.Equal(t, "user 42", k.Comment)
		assert.Equal(t, []string{"usage:write"}, k.Scopes)
		assert.Equal(t, []string{"browser"}, k.Tags)
		assert.True(t, k.Created.Equal(time.Now()), "created %s, now %s", k.Created, time.Now())
		assert.True(t, k.Expires.Equal(k.Created.Add(time.Minute)))

		listed, err := c.List(ctx)
		require.NoError(t, err)
		require.Len(t, listed, 2)
		got := map[string]keys.Key{}
		for _, l := range listed {
			assert.Empty(t, l.Secret, "a listed key never carries its secret")
			got[l.ID] = l
		}
		assert.Contains(t, got, s.AdminKeyID())
		want := *k
		want.Secret = ""
		assert.Equal(t, want.String(), got[k.ID].String())

		live := s.LiveKeys()
		require.Len(t, live, 2)
		assert.Less(t, live[0].ID, live[1].ID, "LiveKeys is sorted by ID")

		tok, err := c.Grant(ctx, 10*time.Second)
		require.NoError(t, err)
		assert.Regexp(t, `^[\w-]+\.[\w-]+\.[\w-]+$`, tok.Secret)
		assert.True(t, tok.Expires.Equal(time.Now().Add(10*time.Second)))

		require.NoError(t, c.Delete(ctx, k.ID))
		assert.Equal(t, 1, deletes(t, s, k.ID))
		err = c.Delete(ctx, k.ID)
		assert.ErrorIs(t, err, keys.ErrNotFound, "deleting twice answers 404")
		assert.Equal(t, 1, deletes(t, s, k.ID))

		states := s.Keys()
		require.Len(t, states, 2)
		assert.Equal(t, keystest.StatusActive, states[0].Status)
		assert.Equal(t, k.ID, states[1].Key.ID)
		assert.Equal(t, keystest.StatusDeleted, states[1].Status)
		assert.True(t, states[1].DeletedAt.Equal(time.Now()))
		assert.Empty(t, states[1].Key.Secret)
		assert.Len(t, s.LiveKeys(), 1)
	})
}

func TestClientDiscoversProject(t *testing.T) {
	s := memServer(t, keystest.WithProjectID("proj-1"), keystest.WithProjectName("demo"))
	c := s.ClientFor(s.AdminKey(), "")
	got, err := c.Project(t.Context())
	require.NoError(t, err)
	assert.Equal(t, "proj-1", got)
	assert.Equal(t, "proj-1", s.ProjectID())
}

func TestClientErrors(t *testing.T) {
	s := memServer(t, keystest.WithAdminKey("0123456789abcdef0123456789abcdef01234567"))
	usageOnly := s.AddKey(keys.Spec{Comment: "usage only", Scopes: []string{"usage:write"}})
	memberKey := s.AddKey(keys.Spec{Comment: "member", Scopes: []string{"member"}})
	spec := func(scopes ...string) keys.Spec { return keys.Spec{Scopes: scopes, TTL: time.Minute} }

	const unknownKey = "ffffffffffffffffffffffffffffffffffffffff"
	admin, project := s.AdminKey(), s.ProjectID()

	tests := []struct {
		name     string
		key      string // the client's; no answer or error may hold it
		project  string
		call     func(context.Context, *keys.Client) error
		sentinel error
		status   int
		code     string
	}{
		{"admin key mints admin", admin, project, create(spec("admin")), keys.ErrForbidden, 403, "INSUFFICIENT_PERMISSIONS"},
		{"admin key mints member role", admin, project, create(spec("member")), keys.ErrForbidden, 403, "INSUFFICIENT_PERMISSIONS"},
		{"admin key mints project:write", admin, project, create(spec("project:write")), keys.ErrForbidden, 403, "INSUFFICIENT_PERMISSIONS"},
		{"member key mints owner", memberKey.Secret, project, create(spec("owner")), keys.ErrForbidden, 403, "INSUFFICIENT_PERMISSIONS"},
		{"unknown scope", admin, project, create(spec("foo:bar")), nil, 400, "BAD_REQUEST"},
		{"usage key creates", usageOnly.Secret, project, create(spec("usage:write")), keys.ErrForbidden, 403, "INSUFFICIENT_PERMISSIONS"},
		{"usage key lists", usageOnly.Secret, project, list, keys.ErrForbidden, 403, "INSUFFICIENT_PERMISSIONS"},
		{"usage key deletes", usageOnly.Secret, project, del(memberKey.ID), keys.ErrForbidden, 403, "INSUFFICIENT_PERMISSIONS"},
		{"usage key grants", usageOnly.Secret, project, grant, keys.ErrForbidden, 403, "INSUFFICIENT_PERMISSIONS"},
		{"unknown key", unknownKey, project, list, keys.ErrUnauthorized, 401, "INVALID_AUTH"},
		{"unknown key grants", unknownKey, project, grant, keys.ErrUnauthorized, 401, "INVALID_AUTH"},
		{"unknown project", admin, "no-such-project", list, keys.ErrNotFound, 404, "PROJECT_NOT_FOUND"},
		{"unknown key ID", admin, project, del("no-such-key"), keys.ErrNotFound, 404, "NOT_FOUND"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(t.Context(), s.ClientFor(tt.key, tt.project))
			var apiErr *keys.APIError
			require.ErrorAs(t, err, &apiErr)
			assert.Equal(t, tt.status, apiErr.StatusCode)
			assert.Equal(t, tt.code, apiErr.Code)
			assert.NotEmpty(t, apiErr.RequestID)
			if tt.sentinel != nil {
				assert.ErrorIs(t, err, tt.sentinel)
			}
			testenv.NoSecret(t, "error", err.Error(), tt.key) // which quotes Code, Message and RequestID
		})
	}
	assert.Len(t, s.Keys(), 3, "no failed call created a key")
}

func create(spec keys.Spec) func(context.Context, *keys.Client) error {
	return func(ctx context.Context, c *keys.Client) error { _, err := c.Create(ctx, spec); return err }
}

func del(id string) func(context.Context, *keys.Client) error {
	return func(ctx context.Context, c *keys.Client) error { return c.Delete(ctx, id) }
}

func list(ctx context.Context, c *keys.Client) error { _, err := c.List(ctx); return err }

func grant(ctx context.Context, c *keys.Client) error {
	_, err := c.Grant(ctx, time.Minute)
	return err
}

func TestExpiredKeyStopsAuthenticatingButStaysListed(t *testing.T) {
	tests := []struct {
		name string
		pass func(*keystest.Server, time.Duration)
	}{
		{"server clock advanced", func(s *keystest.Server, d time.Duration) { s.Advance(d) }},
		{"bubble clock", func(_ *keystest.Server, d time.Duration) { time.Sleep(d) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := memServer(t)
				admin := s.Client()
				ctx := t.Context()
				k, err := admin.Create(ctx, keys.Spec{Scopes: []string{"keys:read", "usage:write"}, TTL: 30 * time.Second})
				require.NoError(t, err)
				own := s.ClientFor(k.Secret, s.ProjectID())

				tt.pass(s, 30*time.Second-time.Nanosecond)
				_, err = own.List(ctx)
				require.NoError(t, err, "the key works until its expiry")

				tt.pass(s, time.Nanosecond)
				_, err = own.List(ctx)
				assert.ErrorIs(t, err, keys.ErrUnauthorized, "the key stops authenticating at its expiry")

				listed, err := admin.List(ctx)
				require.NoError(t, err)
				ids := []string{}
				for _, l := range listed {
					ids = append(ids, l.ID)
				}
				assert.Contains(t, ids, k.ID, "an expired key stays listed")
				assert.Equal(t, keystest.StatusExpired, s.Keys()[1].Status)
				assert.Len(t, s.LiveKeys(), 1)

				require.NoError(t, admin.Delete(ctx, k.ID), "an expired key can be deleted")
				listed, err = admin.List(ctx)
				require.NoError(t, err)
				assert.Len(t, listed, 1)
			})
		})
	}
}

func TestRevokeAdminKey(t *testing.T) {
	s := memServer(t)
	c := s.Client()
	_, err := c.List(t.Context())
	require.NoError(t, err)

	assert.True(t, s.RevokeKey(s.AdminKeyID()))
	assert.False(t, s.RevokeKey(s.AdminKeyID()), "revoking twice")
	assert.False(t, s.RevokeKey("no-such-key"))

	_, err = c.List(t.Context())
	assert.ErrorIs(t, err, keys.ErrUnauthorized)
	assert.Equal(t, 0, deletes(t, s, s.AdminKeyID()), "a revoke is not an API delete")
	assert.Empty(t, s.LiveKeys())
}

func TestAdminScopes(t *testing.T) {
	s := memServer(t, keystest.WithAdminScopes("owner"))
	k, err := s.Client().Create(t.Context(), keys.Spec{Scopes: []string{"admin"}, TTL: time.Minute})
	require.NoError(t, err, "an owner key may mint an admin key")
	assert.Equal(t, []string{"admin"}, k.Scopes)
}

func TestStartRejectsBadOptions(t *testing.T) {
	tests := []struct {
		name string
		opt  keystest.Option
	}{
		{"empty project", keystest.WithProjectID("")},
		{"slash in project", keystest.WithProjectID("a/b")},
		{"empty admin key", keystest.WithAdminKey("")},
		{"admin key with space", keystest.WithAdminKey("a b")},
		{"no admin scopes", keystest.WithAdminScopes()},
		{"unknown admin scope", keystest.WithAdminScopes("root")},
		{"nil option", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := keystest.Start(keystest.WithoutListener(), tt.opt)
			assert.Nil(t, s)
			require.Error(t, err)
			assert.Regexp(t, "^keystest: ", err.Error())
		})
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	for _, opts := range [][]keystest.Option{{keystest.WithoutListener()}, nil} {
		s, err := keystest.Start(opts...)
		require.NoError(t, err)
		c := s.Client()
		_, err = c.List(t.Context())
		require.NoError(t, err)

		s.Close()
		s.Close()
		_, err = c.List(t.Context())
		assert.ErrorIs(t, err, keystest.ErrClosed)
	}
}

func TestAddKeyRefusesBadSpec(t *testing.T) {
	rec := &misuseTB{TB: t}
	s := keystest.NewServer(rec, keystest.WithoutListener())
	assert.Zero(t, s.AddKey(keys.Spec{Scopes: []string{"usage:write"}, TTL: time.Second, ExpiresAt: time.Now().Add(time.Hour)}))
	assert.Zero(t, s.AddKey(keys.Spec{Scopes: []string{"root"}}))
	before := s.Now()
	s.Advance(-time.Second)
	assert.False(t, s.Now().Before(before), "the clock never goes back")
	require.Len(t, rec.errs, 3)
	assert.Contains(t, rec.errs[0], "at most one of TTL and ExpiresAt")
	assert.Contains(t, rec.errs[1], `unknown scope "root"`)
	assert.Contains(t, rec.errs[2], "negative duration")
	assert.Len(t, s.Keys(), 1, "only the admin key")
	k := s.AddKey(keys.Spec{Scopes: []string{"usage:write"}})
	assert.True(t, k.Expires.IsZero())
	assert.Regexp(t, hex40, k.Secret)
}

func TestServerPrintsRedacted(t *testing.T) {
	s := memServer(t)
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		got := fmt.Sprintf(verb, s)
		testenv.NoSecret(t, verb, got, s.AdminKey())
		assert.Contains(t, got, s.ProjectID(), verb)
	}
}

func TestKeyLooksUpOneKey(t *testing.T) {
	s := memServer(t)
	_, ok := s.Key("no-such-key")
	assert.False(t, ok)
	k := s.AddKey(keys.Spec{Scopes: []string{"usage:write"}})
	got, ok := s.Key(k.ID)
	require.True(t, ok)
	assert.Equal(t, keystest.StatusActive, got.Status)
	assert.Empty(t, got.Key.Secret, "never the secret")
	require.True(t, s.RevokeKey(k.ID))
	got, _ = s.Key(k.ID)
	assert.Equal(t, keystest.StatusDeleted, got.Status)
	assert.Empty(t, s.ListenURL(), "a server without a listener serves no WebSocket")
}
