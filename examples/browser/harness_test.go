package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dglease/dglease/internal/testenv"
	"github.com/dglease/dglease/keys/keystest"
	"github.com/dglease/dglease/lease"
)

// harness is the backend wired to a socket-less fake Deepgram, safe inside
// a testing/synctest bubble. When the test ends it closes the backend and
// checks that no secret it saw (admin key, issued credentials, session
// cookies) reached the log.
type harness struct {
	t    *testing.T
	fake *keystest.Server
	s    *server
	logs *testenv.Buffer

	mu      sync.Mutex
	secrets []string
}

// testListenURL is the listen URL the handler tests hand out; nothing
// connects to it.
const testListenURL = "ws://listen.invalid/v1/listen"

// newHarness builds the backend: testConfig with API keys, unless edit
// says otherwise.
func newHarness(t *testing.T, edit ...func(*config)) *harness {
	t.Helper()
	return newHarnessOn(t, keystest.NewServer(t, keystest.WithoutListener()), edit...)
}

// newHarnessOn is newHarness on a fake of the caller's, e.g. one that
// listens, for streams.
func newHarnessOn(t *testing.T, fake *keystest.Server, edit ...func(*config)) *harness {
	t.Helper()
	h := &harness{t: t, fake: fake, logs: &testenv.Buffer{}}
	h.secrets = append(h.secrets, fake.AdminKey())
	cfg := testConfig(fake, fake.Client(), h.logs)
	for _, e := range edit {
		e(&cfg)
	}
	s, err := newServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.s = s
	closeAndCheckLog(t, s, h.logs, func() []string {
		h.mu.Lock()
		defer h.mu.Unlock()
		return slices.Clone(h.secrets)
	})
	return h
}

// testConfig is the backend's configuration in tests: credentials from
// keys (the fake's client, or a wrapper of it), the fake's view of each
// key, usage read back through the fake's client, testListenURL, a 10 s
// TTL, no rate limit, and every log line, debug included, to logw.
func testConfig(fake *keystest.Server, keys lease.KeyService, logw io.Writer) config {
	return config{
		Keys:      keys,
		ListenURL: testListenURL,
		Backend:   "the fake",
		TTL:       10 * time.Second,
		RateEvery: 0, // no rate limit
		Burst:     1,
		Logger:    slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelDebug})),
		KeyStatus: fakeKeyStatus(fake),
		Usage:     fake.Client(),
	}
}

// closeAndCheckLog closes s when the test ends, then checks that none of
// the secrets (asked for then) reached the log, without printing either.
func closeAndCheckLog(t *testing.T, s *server, logs *testenv.Buffer, secrets func() []string) {
	t.Cleanup(func() {
		if err := s.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
		testenv.NoSecret(t, "the backend's log", logs.String(), secrets()...)
	})
}

// sawSecret registers a secret that must never be logged.
func (h *harness) sawSecret(s string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.secrets = append(h.secrets, s)
}

// browser is one visitor: it keeps the session cookie it was given.
type browser struct {
	h      *harness
	cookie *http.Cookie
}

// visitor loads the page, which starts a session.
func (h *harness) visitor() *browser {
	h.t.Helper()
	b := &browser{h: h}
	res := b.do("GET", "/", nil)
	if res.StatusCode != http.StatusOK {
		h.t.Fatalf("GET / = %d", res.StatusCode)
	}
	if b.cookie == nil {
		h.t.Fatal("GET / set no session cookie")
	}
	return b
}

// do sends a request as this visitor; body, if not nil, is sent as JSON.
func (b *browser) do(method, path string, body any) *http.Response {
	b.h.t.Helper()
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			b.h.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req := httptest.NewRequest(method, path, rd)
	if b.cookie != nil {
		req.AddCookie(b.cookie)
	}
	rec := httptest.NewRecorder()
	b.h.s.ServeHTTP(rec, req)
	res := rec.Result()
	for _, c := range res.Cookies() {
		if c.Name == sessionCookie {
			b.cookie = c
			b.h.sawSecret(c.Value)
		}
	}
	return res
}

// credentialPath and releasePath are where the demo mounts leasehttp's
// routes.
const (
	credentialPath = "/api/deepgram/credential"
	releasePath    = "/api/deepgram/release"
)

// credential is leasehttp's answer to POST /credential.
type credential struct {
	Secret      string    `json:"secret"`
	Subprotocol []string  `json:"subprotocol"`
	LeaseID     string    `json:"lease_id"`
	Expires     time.Time `json:"expires"`
	Revocable   bool      `json:"revocable"`
	Release     string    `json:"release"`
}

// credential asks for a credential and requires it to be issued.
func (b *browser) credential() credential {
	b.h.t.Helper()
	res := b.do("POST", credentialPath, nil)
	if res.StatusCode != http.StatusOK {
		b.h.t.Fatalf("POST %s = %d %s", credentialPath, res.StatusCode, readAll(res))
	}
	var c credential
	decode(b.h.t, res, &c)
	if c.Secret == "" || len(c.Subprotocol) != 2 || c.Subprotocol[1] != c.Secret {
		b.h.t.Fatalf("POST %s: no secret, or a subprotocol list (%d elements) that does not carry it", credentialPath, len(c.Subprotocol))
	}
	b.h.sawSecret(c.Secret)
	return c
}

// release releases a credential by its release handle and returns the
// status code.
func (b *browser) release(handle string) int {
	b.h.t.Helper()
	return b.do("POST", releasePath, map[string]string{"release": handle}).StatusCode
}

// status returns the status of a lease, by its ID.
func (b *browser) status(leaseID string) status {
	b.h.t.Helper()
	if leaseID == "" {
		b.h.t.Fatal("status: no lease ID")
	}
	path := "/api/status/" + leaseID
	res := b.do("GET", path, nil)
	if res.StatusCode != http.StatusOK {
		b.h.t.Fatalf("GET %s = %d %s", path, res.StatusCode, readAll(res))
	}
	var st status
	decode(b.h.t, res, &st)
	return st
}

// keyID is the Deepgram key ID of the visitor's lease, from its status.
func (b *browser) keyID(leaseID string) string {
	b.h.t.Helper()
	id := b.status(leaseID).KeyID
	if id == "" {
		b.h.t.Fatalf("lease %s has no key ID", leaseID)
	}
	return id
}

// keyStatus is the fake's view of a key.
func (h *harness) keyStatus(keyID string) keystest.KeyStatus {
	h.t.Helper()
	k, ok := h.fake.Key(keyID)
	if !ok {
		h.t.Fatalf("the fake has no key %s", keyID)
	}
	return k.Status
}

func decode(t *testing.T, res *http.Response, v any) {
	t.Helper()
	if err := json.NewDecoder(res.Body).Decode(v); err != nil {
		t.Fatalf("decode answer: %v", err)
	}
}

func readAll(res *http.Response) string {
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

// usage asks for the visitor's usage from the day from ("" for today) and
// requires an answer.
func (b *browser) usage(from string) usage {
	b.h.t.Helper()
	path := "/api/usage"
	if from != "" {
		path += "?from=" + from
	}
	res := b.do("GET", path, nil)
	if res.StatusCode != http.StatusOK {
		b.h.t.Fatalf("GET %s = %d %s", path, res.StatusCode, readAll(res))
	}
	var u usage
	decode(b.h.t, res, &u)
	return u
}
