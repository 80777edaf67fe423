package keystest

// Deepgram's roles and the scopes each implies. A role name used as a scope
// ("member", "admin", "owner") grants the role's scopes; higher roles include
// the lower ones, role names included.
var (
	memberScopes = []string{"project:read", "project:write", "keys:read", "keys:write", "usage:read", "usage:write"}
	adminScopes  = []string{"members:read", "members:write", "admins:read", "admins:write", "owners:read", "billing:read"}
	ownerScopes  = []string{"project:write:settings", "project:destroy", "owners:write", "billing:write"}
)

// roleRights maps each role to everything it grants.
var roleRights = func() map[string][]string {
	member := append([]string{"member"}, memberScopes...)
	admin := append(append([]string{"admin"}, member...), adminScopes...)
	owner := append(append([]string{"owner"}, admin...), ownerScopes...)
	return map[string][]string{"member": member, "admin": admin, "owner": owner}
}()

// knownScope reports whether sc is a Deepgram scope or role this fake knows.
func knownScope(sc string) bool { return knownScopes[sc] }

// knownScopes holds every scope and role: the owner's rights.
var knownScopes = rightsOf([]string{"owner"})

// rights is a key's effective rights: its scopes expanded by roles.
type rights map[string]bool

func rightsOf(scopes []string) rights {
	r := rights{}
	for _, sc := range scopes {
		r[sc] = true
		for _, implied := range roleRights[sc] {
			r[implied] = true
		}
	}
	return r
}

// covers reports whether r includes every right that scopes grant, and the
// first one it lacks. A role in scopes is covered only by the same or a
// higher role, whose rights include all the role's rights.
func (r rights) covers(scopes []string) (string, bool) {
	for _, sc := range scopes {
		if !r[sc] {
			return sc, false
		}
	}
	return "", true
}
