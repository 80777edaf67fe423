package lease_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"k8s.io/klog/v2"

	"github.com/dglease/dglease/internal/testenv"
	"github.com/dglease/dglease/keys"
	"github.com/dglease/dglease/keys/keystest"
	"github.com/dglease/dglease/lease"
)

// TestSecretsAudit checks that no secret (the admin key, a spare admin
// key, any leased API key or grant token) ever appears in what the library
// shows: its log lines (LogHooks on a JSON handler), its events, every
// value and error it returns, printed with %v, %+v and %#v (errors link by
// link), and any panic.
func TestSecretsAudit(t *testing.T) {
	t.Run("matrix", auditMatrix)
	t.Run("environment", auditEnvironment)
}

// auditLeases is how many leases each cell of the matrix acquires in the
// audit: fewer than TestFaultMatrix's 200, to keep the run short under
// -race; enough for every code path, e.g. a *CloseError naming more keys
// than its message lists (20).
const auditLeases = 50

// auditMatrix runs every cell of the fault matrix (TestFaultMatrix's
// cells) while recording all of it.
func auditMatrix(t *testing.T) {
	n := min(auditLeases, matrixLeaseCount())
	matrixCells(t, func(t *testing.T, f matrixFault, p matrixPath) matrixResult {
		var res matrixResult
		synctest.Test(t, func(t *testing.T) {
			out := &testenv.Buffer{}
			logger := slog.New(slog.NewJSONHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug}))
			var env *matrixEnv
			var panicked any
			func() {
				defer func() {
					if v := recover(); v != nil {
						panicked = v
						auditPrint(out, v)
					}
				}()
				res, env = matrixRun(t, f, p, n, lease.LogHooks(logger), func(v any) { auditPrint(out, v) })
			}()
			text := out.String()
			var secrets []string
			if env != nil {
				env.mu.Lock()
				secrets = append(secrets, env.secrets...)
				env.mu.Unlock()
				secrets = append(secrets, env.srv.AdminKey(), env.spare.Secret)
				for _, k := range env.foreign {
					secrets = append(secrets, k.Secret)
				}
				if res.Leases > 0 {
					assert.True(t, strings.Contains(text, `"msg":"lease acquired"`), "the audit saw the logs")
					assert.True(t, strings.Contains(text, "[REDACTED]"), "the audit saw the leases")
				}
			}
			leaked := auditLeaks(text, secrets)
			assert.Empty(t, leaked, "secrets found in the output (shown redacted)")
			if panicked != nil {
				t.Fatalf("the cell panicked (value not shown: it is part of the audited text)")
			}
		})
		return res
	})
}

// auditPrint writes v with %v, %+v and %#v, and the same for every error
// it holds, link by link (an error inside a struct prints with %#v only
// as an address).
func auditPrint(w io.Writer, v any) {
	fmt.Fprintf(w, "%v\n%+v\n%#v\n", v, v, v)
	switch x := v.(type) {
	case error:
		auditPrintErr(w, x)
	case lease.Event:
		auditPrintErr(w, x.Err)
	case []lease.Undeleted:
		for _, u := range x {
			auditPrintErr(w, u.Err)
		}
	case lease.SweepResult:
		for _, u := range x.Failed {
			auditPrintErr(w, u.Err)
		}
	}
}

func auditPrintErr(w io.Writer, err error) {
	if err == nil {
		return
	}
	fmt.Fprintf(w, "%s\n%v\n%+v\n%#v\n", err.Error(), err, err, err)
	var ce *lease.CloseError
	if errors.As(err, &ce) {
		for _, u := range ce.Undeleted {
			auditPrintErr(w, u.Err)
		}
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		auditPrintErr(w, u.Unwrap())
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			auditPrintErr(w, e)
		}
	}
}

// auditLeaks returns, redacted, the secrets found in text. A secret counts
// as found when any 16 consecutive characters of its last 40 appear (all of
// an API key; a grant token's signature), so a secret cut short is found
// too, as testenv.NoSecret finds it. Only runs of hex or base64url
// characters at least 16 long are examined, so a large text with many
// secrets is checked in one pass.
func auditLeaks(text string, secrets []string) []string {
	const tail, w = 40, 16
	want := map[string]string{}
	for _, s := range secrets {
		t := s[max(0, len(s)-tail):]
		for i := 0; i+w <= len(t); i++ {
			want[t[i:i+w]] = s
		}
	}
	found := map[string]bool{}
	isToken := func(c byte) bool {
		return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
	}
	for i := 0; i < len(text); {
		if !isToken(text[i]) {
			i++
			continue
		}
		j := i
		for j < len(text) && isToken(text[j]) {
			j++
		}
		for k := i; k+w <= j; k++ {
			if s, ok := want[text[k:k+w]]; ok {
				found[s] = true
			}
		}
		i = j
	}
	var out []string
	for s := range found {
		out = append(out, s[:4]+"…(redacted)")
	}
	slices.Sort(out)
	return out
}

func TestAuditLeaksFindsSecrets(t *testing.T) {
	key := strings.Repeat("ab12", 10)
	jwt := "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ4In0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
	assert.Empty(t, auditLeaks("nothing here "+key[:15], []string{key, jwt}), "15 characters are not enough")
	assert.Len(t, auditLeaks("cut short: "+key[:16]+"…", []string{key, jwt}), 1, "a secret cut short")
	assert.Len(t, auditLeaks("cut short: "+jwt[:len(jwt)-20]+"…", []string{key, jwt}), 1, "a token cut inside its signature")
	assert.Len(t, auditLeaks(`{"err":"token `+key+`"}`, []string{key, jwt}), 1)
	assert.Len(t, auditLeaks("Bearer "+jwt+"\n", []string{key, jwt}), 1)
	assert.Len(t, auditLeaks("x"+key+"y", []string{key}), 1, "inside a longer run")
}

// auditEnvironment runs a Manager with every DEEPGRAM_* variable set to a
// hostile value, against a fake listening on a loopback socket: nothing
// may be printed, no call may go anywhere but the fake, and no secret may
// show.
func auditEnvironment(t *testing.T) {
	const envKey = "0123456789abcdef0123456789abcdef01234567"
	hostile := map[string]string{
		"DEEPGRAM_HOST":                "http://127.0.0.2:1",
		"DEEPGRAM_ACCESS_TOKEN":        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJldmlsIn0.ZXZpbC1zaWduYXR1cmUtZXZpbC1zaWduYXR1cmUtZXY",
		"DEEPGRAM_API_KEY":             envKey,
		"DEEPGRAM_API_VERSION":         "v9",
		"DEEPGRAM_API_PATH":            "/evil/path",
		"DEEPGRAM_WEBSOCKET_SKIP_AUTH": "true",
		"DEEPGRAM_DEBUG_REST":          "true",
		"DEEPGRAM_SELF_HOSTED":         "true",
	}
	for k, v := range hostile {
		t.Setenv(k, v)
	}
	srv := keystest.NewServer(t)
	fakeURL, err := url.Parse(srv.URL)
	require.NoError(t, err)
	base := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(base.CloseIdleConnections)
	rec := &auditTransport{base: base}
	client, err := keys.New(srv.AdminKey(), srv.ProjectID(), keys.WithHost(srv.URL), keys.WithHTTPClient(&http.Client{Transport: rec, Timeout: 10 * time.Second}))
	require.NoError(t, err)
	filesBefore := auditDirNames(t)

	// klog, the SDK's logger, as a program that enabled it would have it:
	// verbose, to a buffer. Its default (to stderr) is checked below too.
	var klogFlags flag.FlagSet
	klog.InitFlags(&klogFlags)
	var klogged testenv.Buffer

	var out testenv.Buffer // everything shown: logs, values, errors
	var secrets []string
	var problems []string // checked after stdout and stderr are restored
	printed := testenv.CaptureStdio(t, func() {
		logger := slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
		show := func(v any) { auditPrint(&out, v) }
		check := func(err error, what string) {
			if err != nil {
				show(err)
				problems = append(problems, fmt.Sprintf("%s: %v", what, err))
			}
		}
		ctx := context.Background()
		for round, verbose := range []bool{false, true} {
			if verbose {
				_ = klogFlags.Set("v", "9")
				_ = klogFlags.Set("logtostderr", "false")
				_ = klogFlags.Set("alsologtostderr", "false")
				klog.SetOutput(&klogged)
			}
			m, err := lease.New(client, lease.WithRateLimit(0, 1), lease.WithHooks(lease.LogHooks(logger)))
			check(err, "New")
			if err != nil {
				return
			}
			var ls []*lease.Lease
			for i := range 4 {
				cctx, cancel := context.WithCancel(ctx)
				defer cancel()
				l, err := m.Acquire(cctx, fmt.Sprint("env-user-", round, "-", i))
				check(err, "Acquire")
				if err == nil {
					show(l)
					secrets = append(secrets, l.Secret())
					ls = append(ls, l)
				}
				if i == 3 {
					cancel()
				}
			}
			srv.Fail(keystest.OpDelete, keystest.Fault{Status: 503, RetryAfter: time.Second})
			if len(ls) > 1 {
				ls[0].Release()
				ls[1].Release()
			}
			// A create whose answer is lost: the socket is reset.
			srv.LoseAnswer(keystest.OpCreate, 1)
			_, err = m.Acquire(ctx, "env-lost")
			show(err)
			if err == nil {
				problems = append(problems, "Acquire succeeded although its answer was lost")
			}
			n, err := m.Sweep(ctx)
			show(n)
			check(err, "Sweep")
			cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			err = m.Close(cctx)
			cancel()
			show(m.Stats())
			show(m.Undeleted())
			check(err, "Close")

			g, err := lease.New(client, lease.WithRateLimit(0, 1), lease.WithGrantTokens(), lease.WithHooks(lease.LogHooks(logger)))
			check(err, "New (grant)")
			if err == nil {
				l, err := g.Acquire(ctx, "env-grant")
				check(err, "Acquire (grant)")
				if err == nil {
					show(l)
					secrets = append(secrets, l.Secret())
					l.Release()
				}
				check(g.Close(ctx), "Close (grant)")
			}

			// The lost create's key expires; a Sweep then removes it.
			srv.Advance(lease.DefaultTTL + lease.DefaultExpiryMargin + time.Second)
			res, err := lease.Sweep(ctx, client, lease.SweepOptions{})
			show(res)
			check(err, "Sweep after expiry")
			if res.Deleted != 1 {
				problems = append(problems, fmt.Sprintf("Sweep after expiry deleted %d keys, want 1 (the lost create's)", res.Deleted))
			}
		}
		klog.Flush()
	})
	_ = klogFlags.Set("v", "0")
	_ = klogFlags.Set("logtostderr", "true")
	klog.SetOutput(io.Discard)

	assert.Empty(t, problems)
	assert.Zero(t, len(printed), "bytes printed to stdout or stderr (not shown: they may hold a secret)")
	assert.Equal(t, filesBefore, auditDirNames(t), "no file (e.g. the SDK's REST debug log) is written")

	reqs := rec.all()
	require.NotEmpty(t, reqs)
	for _, r := range reqs {
		assert.Equal(t, fakeURL.Host, r.URL.Host, "%s %s left for another host", r.Method, r.URL)
		assert.Equal(t, "http", r.URL.Scheme)
		assert.True(t, strings.HasPrefix(r.URL.Path, "/v1/"), "path %s", r.URL.Path)
		assert.True(t, strings.HasPrefix(strings.ToLower(r.Header.Get("Authorization")), "token "), "%s %s: not authenticated with the API key", r.Method, r.URL)
	}
	served := srv.Requests()
	assert.Len(t, served, len(reqs), "every call the client made reached the fake, and nothing else did")
	for _, r := range served {
		assert.Equal(t, "token", r.Scheme, "%s %s", r.Method, r.Path)
	}
	assert.Equal(t, 2*(4+1), countOps(srv, keystest.OpCreate), "one create per Acquire: none retried")

	// Leave nothing running for the tests that follow (some count
	// goroutines): the fake's connections, the client's idle ones.
	srv.Close()
	base.CloseIdleConnections()
	goleak.VerifyNone(t)

	secrets = append(secrets, srv.AdminKey(), envKey, hostile["DEEPGRAM_ACCESS_TOKEN"])
	all := out.String() + "\n" + klogged.String() + "\n" + printed
	assert.True(t, strings.Contains(out.String(), `"msg":"lease acquired"`), "the audit saw the logs")
	assert.Empty(t, auditLeaks(all, secrets), "secrets found in the output (shown redacted)")
}

// auditTransport records every request the client sends.
type auditTransport struct {
	base http.RoundTripper

	mu   sync.Mutex
	reqs []*http.Request
}

func (a *auditTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	a.mu.Lock()
	a.reqs = append(a.reqs, req.Clone(context.Background()))
	a.mu.Unlock()
	return a.base.RoundTrip(req)
}

func (a *auditTransport) all() []*http.Request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.reqs)
}

// auditDirNames lists the working directory.
func auditDirNames(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(".")
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
