package keys_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/internal/testenv"
	"github.com/dglease/dglease/keys"
)

// verbs are the fmt verbs a value may meet. %p is left out: fmt handles it
// before any Formatter, and for a non-pointer it prints the raw fields as a
// bad verb (go vet flags that use); see TestPercentPOfAValue.
var verbs = []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T", "%10.3v", "%-40s", "%t", "%e"}

func sampleKey() keys.Key {
	return keys.Key{
		ID:      "key-1",
		Secret:  newSecret,
		Comment: "stream for user 42",
		Scopes:  []string{"usage:write"},
		Tags:    []string{"dglease"},
		Created: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		Expires: time.Date(2025, 1, 2, 3, 5, 5, 0, time.UTC),
	}
}

func sampleToken() keys.Token {
	return keys.Token{Secret: testJWT, Expires: time.Date(2025, 1, 2, 3, 5, 5, 0, time.UTC)}
}

// secretFragments are pieces of the secrets in several encodings: %x of a
// leaked string would show the hex, not the text.
func secretFragments() []string {
	var out []string
	for _, s := range []string{testAPIKey, newSecret, testJWT} {
		out = append(out, s, fmt.Sprintf("%x", s), fmt.Sprintf("%X", s), s[:16])
	}
	return out
}

func assertRedacted(t *testing.T, got string, context string) {
	t.Helper()
	testenv.NoSecret(t, context, got, secretFragments()...)
}

// assertShows checks that got, described by what, contains each of wants.
// Failing, it does not print got: a value that failed to redact would
// print its secret.
func assertShows(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s does not show %q (it is not printed: it may hold a secret)", what, w)
		}
	}
}

func TestKeyPrintsRedacted(t *testing.T) {
	k := sampleKey()
	kp := &k
	values := map[string]any{
		"Key":               k,
		"*Key":              kp,
		"[]Key":             []keys.Key{k, k},
		"[]*Key":            []*keys.Key{kp},
		"map[string]Key":    map[string]keys.Key{"a": k},
		"struct with Key":   struct{ K keys.Key }{k},
		"struct with *Key":  struct{ K *keys.Key }{kp},
		"any holding a Key": []any{k},
	}
	for name, v := range values {
		for _, verb := range verbs {
			got := fmt.Sprintf(verb, v)
			assertRedacted(t, got, name+" "+verb)
		}
		assertRedacted(t, fmt.Sprint(v), name+" Sprint")
		assertRedacted(t, fmt.Sprintln(v), name+" Sprintln")
	}

	// The redacted form still says which key it is.
	assertShows(t, "a Key with +v", fmt.Sprintf("%+v", k), "key-1", "[REDACTED]")
	assertShows(t, "a struct holding a Key with +v", fmt.Sprintf("%+v", struct{ K keys.Key }{k}), "[REDACTED]")
	assert.True(t, k.String() == fmt.Sprintf("%#v", k), "%#v of a Key is its String (Format handles %#v)")
	assert.True(t, fmt.Sprintf("%q", k.String()) == fmt.Sprintf("%q", k), "a Key with q quotes its String")
}

func TestKeyWithoutSecretPrintsNoRedactionMarker(t *testing.T) {
	k := sampleKey()
	k.Secret = ""
	assert.NotContains(t, k.String(), "[REDACTED]")
	assert.Contains(t, k.String(), `Secret:""`)
}

func TestTokenPrintsRedacted(t *testing.T) {
	tok := sampleToken()
	values := map[string]any{
		"Token":             tok,
		"*Token":            &tok,
		"[]Token":           []keys.Token{tok},
		"struct with Token": struct{ T keys.Token }{tok},
	}
	for name, v := range values {
		for _, verb := range verbs {
			assertRedacted(t, fmt.Sprintf(verb, v), name+" "+verb)
		}
		assertRedacted(t, fmt.Sprint(v), name+" Sprint")
	}
	assertShows(t, "Token.String()", tok.String(), "[REDACTED]", "2025-01-02T03:05:05Z")
	assert.True(t, tok.String() == fmt.Sprintf("%#v", tok), "%#v of a Token is its String (Format handles %#v)")
}

func TestClientPrintsRedacted(t *testing.T) {
	c, _ := newClient(t, testProject)
	values := map[string]any{
		"*Client":             c,
		"[]*Client":           []*keys.Client{c},
		"struct with *Client": struct{ C *keys.Client }{c},
	}
	for name, v := range values {
		for _, verb := range verbs {
			assertRedacted(t, fmt.Sprintf(verb, v), name+" "+verb)
		}
		assertRedacted(t, fmt.Sprint(v), name+" Sprint")
	}
	assertShows(t, "a Client with v", fmt.Sprintf("%v", c), testHost, testProject, "[REDACTED]")
	assert.True(t, c.String() == fmt.Sprintf("%#v", c), "%#v of a *Client is its String (Format handles %#v)")
}

func TestSlogRedacts(t *testing.T) {
	c, _ := newClient(t, testProject)
	k := sampleKey()
	tok := sampleToken()
	handlers := map[string]func(*bytes.Buffer) slog.Handler{
		"json": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
		"text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
	}
	attrs := map[string]slog.Attr{
		"Key":              slog.Any("k", k),
		"*Key":             slog.Any("k", &k),
		"Token":            slog.Any("t", tok),
		"*Token":           slog.Any("t", &tok),
		"*Client":          slog.Any("c", c),
		"group with Key":   slog.Group("g", slog.Any("k", k)),
		"error with a key": slog.Any("err", fmt.Errorf("wrapped: %v", k)),
		"[]Key":            slog.Any("ks", []keys.Key{k}),
		"struct with Key":  slog.Any("s", struct{ K keys.Key }{k}),
	}
	for hname, mk := range handlers {
		for aname, attr := range attrs {
			t.Run(hname+" "+aname, func(t *testing.T) {
				var buf bytes.Buffer
				slog.New(mk(&buf)).Info("msg", attr)
				got := buf.String()
				require.NotEmpty(t, got)
				assertRedacted(t, got, aname)
			})
		}
	}

	t.Run("LogValue fields", func(t *testing.T) {
		var buf bytes.Buffer
		slog.New(slog.NewJSONHandler(&buf, nil)).Info("msg", slog.Any("k", k), slog.Any("t", tok), slog.Any("c", c))
		assertShows(t, "slog JSON", buf.String(), `"id":"key-1"`, `"secret":"[REDACTED]"`, `"api_key":"[REDACTED]"`, `"project":"`+testProject+`"`)
	})
}

// encoding/json (and so slog's JSON handler on a []Key or a struct holding
// a Key) uses Key.MarshalJSON, which redacts the secret.
func TestJSONRedactsKeysAndTokens(t *testing.T) {
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("msg", slog.Any("ks", []keys.Key{sampleKey()}), slog.Any("s", struct{ T keys.Token }{keys.Token{Secret: newSecret}}))
	assertRedacted(t, buf.String(), "slog JSON []Key")
	b, err := json.Marshal(map[string]any{"k": sampleKey(), "t": &keys.Token{Secret: newSecret}})
	require.NoError(t, err)
	assertRedacted(t, string(b), "json.Marshal")
	assertShows(t, "json.Marshal", string(b), `"secret":"[REDACTED]"`)
}
