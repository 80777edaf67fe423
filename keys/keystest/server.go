package keystest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dglease/dglease/internal/fakelisten"
	"github.com/dglease/dglease/keys"
)

// noListenerURL is the URL of a server started [WithoutListener].
const noListenerURL = "http://keystest.invalid"

// Server is a fake Deepgram: one project, its API keys, grant tokens and
// (over the socket) /v1/listen. Build it with [NewServer] in tests or
// [Start] elsewhere.
//
// All methods are safe for concurrent use, also while requests are being
// served. The server's clock is time.Now plus an offset moved by
// [Server.Advance]; inside a testing/synctest bubble it is the bubble's
// fake clock. A Server is per instance: it shares no state with others.
type Server struct {
	// URL is the base URL of the server, "http://127.0.0.1:port" (or
	// "http://keystest.invalid" for a server started [WithoutListener]).
	// Pass it to keys.WithHost or as the SDK's ClientOptions.Host.
	URL string

	projectID   string
	projectName string
	adminKey    string
	adminKeyID  string
	member      memberJSON
	jwtSecret   []byte
	handler     http.Handler
	http        *httptest.Server
	t           testing.TB     // the test of a NewServer server, for misuse reports; nil from Start
	done        chan struct{}  // closed by Close: releases hangs and waits
	streams     sync.WaitGroup // open /v1/listen streams
	closeOnce   sync.Once

	mu       sync.Mutex // guards everything below
	closed   bool
	inflight sync.WaitGroup // in-memory requests; Add under mu while !closed
	offset   time.Duration
	keys     []*keyRecord // in creation order
	byID     map[string]*keyRecord
	bySecret map[string]*keyRecord
	controls map[Op]*opControl
	requests []Request
	grants   map[string]string // grant token ID (jti) -> ID of the key that minted it
	ended    []Stream          // /v1/listen streams that have ended, in that order
	// Test hooks, set through export_test.go; nil otherwise.
	waitStarted chan<- Op      // told the op of each call about to wait on a hang or latency
	callEnded   chan<- Request // told each call once it is recorded in requests
}

// keyRecord is one key as the fake stores it.
type keyRecord struct {
	id, secret, comment string
	scopes, tags        []string
	rights              rights // scopes expanded by roles; scopes never change
	created, expires    time.Time
	deletedAt           time.Time // zero until deleted or revoked
	deletedByAPI        bool      // a DELETE call succeeded (a second one answers 404)
}

// deleted reports whether k was deleted or revoked.
func (k *keyRecord) deleted() bool { return !k.deletedAt.IsZero() }

// deleteLocked deletes k: it stops authenticating and is no longer listed.
// s.mu is held.
func (s *Server) deleteLocked(k *keyRecord) {
	k.deletedAt = s.now()
	delete(s.bySecret, k.secret)
}

func (k *keyRecord) expired(now time.Time) bool {
	return !k.expires.IsZero() && !now.Before(k.expires)
}

// liveKeyLocked returns the key whose secret is secret if it is neither
// deleted nor expired, else nil. s.mu is held.
func (s *Server) liveKeyLocked(secret string) *keyRecord {
	k := s.bySecret[secret] // bySecret holds no deleted key
	if k == nil || k.expired(s.now()) {
		return nil
	}
	return k
}

// NewServer starts a fake Deepgram for t and closes it when t ends
// (t.Cleanup). It calls t.Fatal if an option is invalid or no listener can
// be opened. Inside a testing/synctest bubble pass [WithoutListener] and
// reach the server through [Server.Client] or [Server.Transport], and
// create the server inside the bubble.
func NewServer(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s, err := Start(opts...)
	if err != nil {
		t.Fatal(err)
	}
	s.t = t
	t.Cleanup(s.Close)
	return s
}

// Start starts a fake Deepgram outside a test, e.g. for an example
// program. The caller must call [Server.Close].
func Start(opts ...Option) (*Server, error) {
	cfg := config{projectName: "keystest", adminScopes: defaultAdminScopes}
	for _, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("keystest: nil Option")
		}
		if err := o.apply(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.projectID == "" {
		cfg.projectID = fakelisten.NewUUID()
	}
	if cfg.adminKey == "" {
		cfg.adminKey = newSecret()
	}
	s := &Server{
		URL:         noListenerURL,
		projectID:   cfg.projectID,
		projectName: cfg.projectName,
		adminKey:    cfg.adminKey,
		member: memberJSON{
			MemberID:  fakelisten.NewUUID(),
			Email:     "admin@keystest.invalid",
			FirstName: "Keystest",
			LastName:  "Admin",
		},
		jwtSecret: make([]byte, 32),
		done:      make(chan struct{}),
		byID:      map[string]*keyRecord{},
		bySecret:  map[string]*keyRecord{},
		controls:  map[Op]*opControl{},
		grants:    map[string]string{},
	}
	rand.Read(s.jwtSecret)
	admin := s.addKey(cfg.adminKey, "keystest admin key", cfg.adminScopes, nil, time.Time{})
	s.adminKeyID = admin.id

	listen := fakelisten.Handler(s.checkStreamCredential, fakelisten.WithShutdown(s.done),
		fakelisten.WithClock(s.Now), fakelisten.WithRecorder(s.recordStream))
	s.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/listen" {
			// Streams are hijacked connections, which httptest.Server.Close
			// does not wait for: Close closes them (WithShutdown) and waits.
			s.streams.Add(1)
			defer s.streams.Done()
			listen.ServeHTTP(w, r)
			return
		}
		s.serveAPI(w, r) // every other path, unknown ones too (404 in JSON)
	})

	if !cfg.noListener {
		s.http = httptest.NewServer(s.handler)
		s.URL = s.http.URL
	}
	return s, nil
}

// String describes the server without its secrets; every fmt verb of a
// *Server, %#v included, prints the same (see [Server.Format]).
func (s *Server) String() string {
	return fmt.Sprintf("keystest.Server{URL:%q Project:%q AdminKey:%q}", s.URL, s.projectID, "[REDACTED]")
}

// Format prints String for every verb, so no verb reaches a secret.
func (s *Server) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		fmt.Fprintf(f, "%q", s.String())
		return
	}
	fmt.Fprint(f, s.String())
}

// ListenURL is the WebSocket URL of the fake's /v1/listen
// ("ws://127.0.0.1:port/v1/listen"), for the SDK's live client or a
// browser; "" for a server started [WithoutListener], which serves no
// WebSocket.
func (s *Server) ListenURL() string {
	if s.http == nil {
		return ""
	}
	return "ws" + strings.TrimPrefix(s.URL, "http") + "/v1/listen"
}

// ProjectID returns the ID of the server's one project.
func (s *Server) ProjectID() string { return s.projectID }

// AdminKey returns the secret of the seeded admin key, which has the
// scopes of [WithAdminScopes] (default keys:read, keys:write, usage:read,
// usage:write) and never expires. It stops working if revoked or deleted.
func (s *Server) AdminKey() string { return s.adminKey }

// AdminKeyID returns the api_key_id of the seeded admin key, e.g. to
// revoke it with [Server.RevokeKey].
func (s *Server) AdminKeyID() string { return s.adminKeyID }

// Client returns a *keys.Client authenticated with [Server.AdminKey] for
// [Server.ProjectID], talking to the server through [Server.Transport]
// (in memory, no socket). Each call returns a new client.
func (s *Server) Client() *keys.Client { return s.ClientFor(s.adminKey, s.projectID) }

// ClientFor returns a *keys.Client that authenticates with secret (any
// key, e.g. one minted by a test) and manages projectID ("" to let the
// client discover it), talking to the server through [Server.Transport].
// If keys.New refuses secret or projectID, it fails the test with
// t.Fatal on a server from [NewServer] (call it from the test's
// goroutine), and panics on a server from [Start].
func (s *Server) ClientFor(secret, projectID string) *keys.Client {
	c, err := keys.New(secret, projectID,
		keys.WithHost(s.URL),
		keys.WithHTTPClient(&http.Client{Transport: s.Transport()}))
	if err != nil {
		if s.t != nil {
			s.t.Helper()
			s.t.Fatalf("keystest: ClientFor: %v", err)
		}
		panic(err)
	}
	return c
}

// Now returns the server's clock: time.Now plus the total of
// [Server.Advance] calls. Key expiry and grant tokens use it.
func (s *Server) Now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now()
}

func (s *Server) now() time.Time { return time.Now().Add(s.offset) }

// Advance moves the server's clock forward by d, so that keys and grant
// tokens expire without waiting. A negative d is misuse (see
// [Server.AddKey]): the clock never goes back.
func (s *Server) Advance(d time.Duration) {
	if d < 0 {
		s.misuse("keystest: Advance with a negative duration %s: the clock never goes back", d)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.offset += d
}

// Close stops the server: it releases hanging calls, refuses new ones and
// waits until the calls in flight have ended. It is idempotent and safe
// for concurrent use; every call returns once the server is closed.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.done)
		if s.http != nil {
			s.http.Close()
		}
		s.inflight.Wait()
		s.streams.Wait()
	})
}

// addKey stores a new key. s.mu must be held, or s not yet shared.
func (s *Server) addKey(secret, comment string, scopes, tags []string, expires time.Time) *keyRecord {
	k := &keyRecord{
		id:      fakelisten.NewUUID(),
		secret:  secret,
		comment: comment,
		scopes:  append([]string(nil), scopes...),
		tags:    append([]string(nil), tags...),
		rights:  rightsOf(scopes),
		created: s.now(),
		expires: expires,
	}
	if len(k.tags) == 0 {
		k.tags = nil
	}
	s.keys = append(s.keys, k)
	s.byID[k.id] = k
	s.bySecret[k.secret] = k
	return k
}

// newSecret returns a Deepgram-like key secret: 40 lower-case hex
// characters from crypto/rand.
func newSecret() string {
	b := make([]byte, 20)
	rand.Read(b)
	return hex.EncodeToString(b)
}
