package leasehttp

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dglease/dglease/lease"
)

// MinReleaseKeyLen is the shortest release key WithReleaseKey accepts:
// 32 bytes, the size of HMAC-SHA256's output.
const MinReleaseKeyLen = 32

// maxBody bounds a request body: a release body is one handle and a
// little JSON; a credential body is empty or a small object.
const maxBody = 4 << 10

//go:embed client.js
var clientJS []byte

// clientETag is client.js's entity tag, so pages revalidate it cheaply.
var clientETag = func() string {
	sum := sha256.Sum256(clientJS)
	return `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`
}()

// Handler serves credentials from a lease.Manager to browsers and other
// clients: POST /credential, POST /release and GET /client.js, relative to
// where it is mounted (see the package documentation). Build it with New.
// It is safe for concurrent use, and holds no state of its own besides
// its configuration: leases live in the Manager, and release handles are
// signed, so any replica sharing the release key can verify them.
type Handler struct {
	m        *lease.Manager
	identify func(*http.Request) (string, error)
	key      []byte
	sign     *signer // signs and verifies handles with key
	shared   bool    // the key was set with WithReleaseKey
	manager  [8]byte
	cop      *http.CrossOriginProtection
	origins  map[string]bool
	logger   *slog.Logger
}

// Option configures a Handler; pass it to New.
type Option func(*Handler) error

// WithReleaseKey sets the HMAC-SHA256 key that signs release handles. Set
// the same key, at least MinReleaseKeyLen random bytes kept secret like a
// password, on every replica behind a load balancer: a page's release
// then verifies on whichever replica receives it, and a replica that does
// not hold the lease deletes its key through its own Manager
// (lease.Manager.ReleaseForeign). Without it the Handlers of a process
// share one random key, drawn when the first is built, and only the
// replica that issued a credential can release it (on the others the
// release is refused with 403, and the key lives until its TTL). The key
// is copied.
//
// Guard it like the project's API key: whoever holds it can sign a handle
// naming any key ID, and a replica would delete that key.
func WithReleaseKey(key []byte) Option {
	return func(h *Handler) error {
		if len(key) < MinReleaseKeyLen {
			return fmt.Errorf("leasehttp: release key is %d bytes; it must be at least %d random bytes (e.g. from crypto/rand, shared by every replica)", len(key), MinReleaseKeyLen)
		}
		h.key = bytes.Clone(key)
		h.shared = true
		return nil
	}
}

// WithAllowedOrigins lets pages on the given origins ("https://app.example.com",
// scheme, host and port only) ask for credentials and release them: their
// requests pass http.CrossOriginProtection and get the CORS headers their
// fetch needs (credentials included, for identify's cookies). By default
// only same-origin pages (and clients that are not browsers, which send no
// Origin) are served; a request from a page on any other origin, a sibling
// subdomain included, is refused
// with 403 before a credential is minted.
func WithAllowedOrigins(origins ...string) Option {
	return func(h *Handler) error {
		for _, o := range origins {
			if err := h.cop.AddTrustedOrigin(o); err != nil {
				return fmt.Errorf("leasehttp: allowed origin %q: want scheme://host[:port], e.g. https://app.example.com: %w", o, err)
			}
			if c := canonicalOrigin(o); c != o {
				return fmt.Errorf("leasehttp: allowed origin %q would never match: browsers send it as %q", o, c)
			}
			h.origins[o] = true
		}
		return nil
	}
}

// canonicalOrigin is o as a browser sends it in Origin: scheme and host
// in lower case, without the scheme's default port.
func canonicalOrigin(o string) string {
	u, err := url.Parse(o)
	if err != nil {
		return o // AddTrustedOrigin checked it
	}
	scheme, host := strings.ToLower(u.Scheme), strings.ToLower(u.Host)
	if (scheme == "https" && strings.HasSuffix(host, ":443")) || (scheme == "http" && strings.HasSuffix(host, ":80")) {
		host = host[:strings.LastIndexByte(host, ':')]
	}
	return scheme + "://" + host
}

// WithLogger sets where the Handler logs what it does not tell clients:
// the cause of a 502, 503 or 500, and why identify refused a request (at
// debug level, with identify's error text as it is: keep tokens out of
// your identify errors). Nil, or no WithLogger, means slog.Default(). The
// Handler logs no credential and no release handle.
func WithLogger(l *slog.Logger) Option {
	return func(h *Handler) error {
		h.logger = l
		return nil
	}
}

// defaultKey is the release key of Handlers built without WithReleaseKey:
// one for the process, drawn at random on first use, so that several
// Handlers on one Manager (two mounts, a Handler rebuilt on a
// configuration reload) accept each other's handles. Handlers on other
// Managers accept none of them all the same: a handle names its Manager,
// and without WithReleaseKey a Handler refuses another Manager's handles.
var defaultKey = sync.OnceValue(func() []byte {
	k := make([]byte, MinReleaseKeyLen)
	_, _ = rand.Read(k) // never fails on supported platforms (crypto/rand's doc)
	return k
})

// New serves credentials from m to the users that identify names.
// identify returns the end user a request is for (e.g. from a session
// cookie); it is called for every POST, must be safe for concurrent use,
// and its error answers 401, or the status of an error that has a
// StatusCode() int method (400 to 599), whose Error() text then reaches
// the client: make it say what to do. Other errors reach the client as a
// generic message and are logged. New makes no network call.
func New(m *lease.Manager, identify func(*http.Request) (user string, err error), opts ...Option) (*Handler, error) {
	if m == nil {
		return nil, errors.New("leasehttp: New needs a *lease.Manager")
	}
	if identify == nil {
		return nil, errors.New("leasehttp: New needs an identify function that names the request's user")
	}
	mid, ok := decodeID(m.ID())
	if !ok {
		return nil, fmt.Errorf("leasehttp: Manager ID %q is not 16 hex characters", m.ID())
	}
	h := &Handler{m: m, identify: identify, manager: mid, cop: http.NewCrossOriginProtection(), origins: map[string]bool{}}
	for _, o := range opts {
		if o == nil {
			return nil, errors.New("leasehttp: nil Option")
		}
		if err := o(h); err != nil {
			return nil, err
		}
	}
	if h.key == nil {
		h.key = defaultKey()
	}
	h.sign = newSigner(h.key)
	if h.logger == nil {
		h.logger = slog.Default()
	}
	return h, nil
}

// ServeHTTP answers POST /credential, POST /release and GET /client.js,
// relative to where h is mounted (with http.StripPrefix), and a CORS
// preflight (OPTIONS) from an allowed origin. Every error is JSON
// {"error": "..."}.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("X-Content-Type-Options", "nosniff")
	h.cors(w, r)
	// Mounted with StripPrefix("/dg") or StripPrefix("/dg/"): the path
	// comes with or without its leading slash.
	switch route := strings.TrimPrefix(r.URL.Path, "/"); route {
	case "credential":
		if h.post(w, r) {
			h.credential(w, r)
		}
	case "release":
		if h.post(w, r) {
			h.release(w, r)
		}
	case "client.js":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			hd.Set("Allow", "GET, HEAD")
			h.fail(w, http.StatusMethodNotAllowed, "client.js answers GET and HEAD only")
			return
		}
		hd.Set("Content-Type", "text/javascript; charset=utf-8")
		hd.Set("Cache-Control", "no-cache")
		hd.Set("ETag", clientETag)
		http.ServeContent(w, r, "client.js", time.Time{}, bytes.NewReader(clientJS))
	default:
		h.fail(w, http.StatusNotFound, fmt.Sprintf("no route %q here: this handler answers POST /credential, POST /release and GET /client.js", "/"+route))
	}
}

// cors adds the CORS headers an allowed origin's fetch needs.
func (h *Handler) cors(w http.ResponseWriter, r *http.Request) {
	if len(h.origins) == 0 {
		return
	}
	hd := w.Header()
	hd.Add("Vary", "Origin")
	if o := r.Header.Get("Origin"); h.origins[o] {
		hd.Set("Access-Control-Allow-Origin", o)
		hd.Set("Access-Control-Allow-Credentials", "true")
		hd.Set("Access-Control-Expose-Headers", "Retry-After")
	}
}

// post checks that r may go on to a POST route: it answers a preflight and
// refuses other methods and cross-origin requests from origins not allowed,
// and reports whether the route should run.
func (h *Handler) post(w http.ResponseWriter, r *http.Request) bool {
	hd := w.Header()
	switch r.Method {
	case http.MethodPost:
	case http.MethodOptions:
		if o := r.Header.Get("Origin"); o != "" && r.Header.Get("Access-Control-Request-Method") != "" {
			if !h.origins[o] {
				h.fail(w, http.StatusForbidden, fmt.Sprintf("origin %s may not ask for credentials: add it with leasehttp.WithAllowedOrigins", o))
				return false
			}
			hd.Set("Access-Control-Allow-Methods", "POST")
			if rh := r.Header.Get("Access-Control-Request-Headers"); rh != "" {
				hd.Set("Access-Control-Allow-Headers", rh)
			}
			hd.Set("Access-Control-Max-Age", "600")
		}
		hd.Set("Allow", "POST, OPTIONS")
		w.WriteHeader(http.StatusNoContent)
		return false
	default:
		hd.Set("Allow", "POST, OPTIONS")
		h.fail(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed: use POST", r.Method))
		return false
	}
	if err := h.cop.Check(r); err != nil {
		h.fail(w, http.StatusForbidden, "cross-origin request refused: this page's origin may not ask for credentials (the server can allow it with leasehttp.WithAllowedOrigins)")
		return false
	}
	return true
}

// statusCoder is an identify error that chooses its own status.
type statusCoder interface{ StatusCode() int }

// user runs identify; on failure it answers and returns false.
func (h *Handler) user(w http.ResponseWriter, r *http.Request) (string, bool) {
	user, err := h.identify(r)
	if err != nil {
		var sc statusCoder
		if errors.As(err, &sc) {
			if c := sc.StatusCode(); c >= 400 && c <= 599 {
				// The error that chose the status speaks to the client,
				// not whatever wraps it.
				h.fail(w, c, sc.(error).Error())
				return "", false
			}
		}
		h.logger.LogAttrs(r.Context(), slog.LevelDebug, "leasehttp: identify refused a request", slog.String("path", r.URL.Path), slog.String("err", err.Error()))
		h.fail(w, http.StatusUnauthorized, "not signed in: the server could not tell which user this request is for")
		return "", false
	}
	if user == "" {
		h.noUser(w, r, errors.New("lease: user must not be empty"))
		return "", false
	}
	return user, true // the rest of the rule is Acquire's (lease.ErrInvalidUser)
}

// body reads r's body, at most maxBody bytes, and decodes it into v; an
// empty body is left to the caller (empty reports it). On failure it
// answers and returns false.
func (h *Handler) body(w http.ResponseWriter, r *http.Request, v any, want string) (empty, ok bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			h.fail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body is over %d bytes: want %s", maxBody, want))
			return false, false
		}
		h.fail(w, http.StatusBadRequest, "could not read the body: "+err.Error())
		return false, false
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return true, true
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil || dec.More() {
		h.fail(w, http.StatusBadRequest, "malformed body: want "+want)
		return false, false
	}
	return false, true
}

// credentialJSON is POST /credential's answer.
type credentialJSON struct {
	Secret      string   `json:"secret"`
	Subprotocol []string `json:"subprotocol"`
	LeaseID     string   `json:"lease_id"`
	Expires     string   `json:"expires"`
	Revocable   bool     `json:"revocable"`
	Release     string   `json:"release"`
}

func (h *Handler) credential(w http.ResponseWriter, r *http.Request) {
	if _, ok := h.body(w, r, &struct{}{}, "an empty body or {}"); !ok {
		return
	}
	user, ok := h.user(w, r)
	if !ok {
		return
	}
	// The lease must outlive this request: it ends by POST /release or
	// its TTL, so the context given to Acquire never ends, and the
	// *Lease is detached because it is dropped when the handler returns.
	l, err := h.m.Acquire(context.WithoutCancel(r.Context()), user)
	if err != nil {
		h.acquireFailed(w, r, err)
		return
	}
	l.Detach()
	if r.Context().Err() != nil {
		// The client left while the key was made: nobody will use it, and
		// it would count against the user's caps until its TTL.
		l.Release()
		return
	}
	if len(l.KeyID()) > maxKeyID {
		l.Release()
		h.logger.LogAttrs(r.Context(), slog.LevelError, "leasehttp: Deepgram answered a key ID too long for a release handle", slog.Int("bytes", len(l.KeyID())), slog.Int("max", maxKeyID))
		h.fail(w, http.StatusBadGateway, "Deepgram issued a credential this server cannot hand over; try again later")
		return
	}
	lid, _ := decodeID(l.ID()) // 16 hex characters (Lease.ID's doc)
	rel := h.sign.seal(&handle{manager: h.manager, lease: lid, expires: l.Expires(), serverExpires: l.ServerExpires(), keyID: l.KeyID()}, user)
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("Cache-Control", "no-store")
	err = json.NewEncoder(w).Encode(credentialJSON{
		Secret:      l.Secret(),
		Subprotocol: l.Subprotocol(),
		LeaseID:     l.ID(),
		Expires:     l.Expires().UTC().Format(time.RFC3339Nano),
		Revocable:   l.Revocable(),
		Release:     rel,
	})
	if err != nil {
		// The answer did not get out (seen only when the first write
		// fails: net/http buffers the body): nobody has the secret.
		l.Release()
	}
}

// acquireFailed answers a failed Acquire: 429 for any refusal, 503 once
// the Manager is closed or when its Limiter could not decide, 502 for
// anything else (Deepgram failed), whose cause is logged and not sent.
func (h *Handler) acquireFailed(w http.ResponseWriter, r *http.Request, err error) {
	var denied *lease.DeniedError
	switch {
	case errors.As(err, &denied):
		secs := RetryAfterSeconds(denied.RetryAfter)
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
		h.write(w, http.StatusTooManyRequests, errorJSON{
			Error:      fmt.Sprintf("no credential now (%s); retry in %d s", denied.Limit, secs),
			RetryAfter: secs,
		})
	case errors.Is(err, lease.ErrClosed):
		h.fail(w, http.StatusServiceUnavailable, "the credential service is shutting down; try again")
	case errors.Is(err, lease.ErrInvalidUser):
		h.noUser(w, r, err)
	case errors.Is(err, lease.ErrLimiterUnavailable):
		h.logger.LogAttrs(r.Context(), slog.LevelError, "leasehttp: the limiter could not decide", slog.String("err", err.Error()))
		h.fail(w, http.StatusServiceUnavailable, "the credential service cannot check its limits right now; try again")
	default:
		h.logger.LogAttrs(r.Context(), slog.LevelError, "leasehttp: could not issue a credential", slog.String("err", err.Error()))
		h.fail(w, http.StatusBadGateway, "Deepgram did not issue a credential; try again later")
	}
}

// noUser answers a request for which identify named a user Acquire
// cannot take (and no error): a bug of the server's, logged.
func (h *Handler) noUser(w http.ResponseWriter, r *http.Request, err error) {
	h.logger.LogAttrs(r.Context(), slog.LevelError, "leasehttp: identify returned an unusable user and no error", slog.String("err", err.Error()))
	h.fail(w, http.StatusInternalServerError, "internal error: the server named no usable user for this request")
}

// RetryAfterSeconds is d in whole seconds, rounded up and at least 1: the
// Retry-After a refusal answers with, so that a client that waits exactly
// that long is not refused again for waiting a fraction too little.
func RetryAfterSeconds(d time.Duration) int64 {
	return max(1, int64(math.Ceil(d.Seconds())))
}

// releaseJSON is POST /release's body.
type releaseJSON struct {
	Release string `json:"release"`
}

const releaseWant = `{"release": "<the release value POST /credential returned>"}`

func (h *Handler) release(w http.ResponseWriter, r *http.Request) {
	var body releaseJSON
	empty, ok := h.body(w, r, &body, releaseWant)
	if !ok {
		return
	}
	if empty || body.Release == "" {
		h.fail(w, http.StatusBadRequest, "missing release handle: want "+releaseWant)
		return
	}
	user, ok := h.user(w, r)
	if !ok {
		return
	}
	hd, bodyBytes, sig, err := parse(body.Release)
	if err != nil {
		h.fail(w, http.StatusForbidden, err.Error())
		return
	}
	mine := hd.manager == h.manager
	if !mine && !h.shared {
		h.fail(w, http.StatusForbidden, "release handle was issued by another replica, and replicas share no release key: set the same leasehttp.WithReleaseKey on every replica")
		return
	}
	if !h.sign.verify(bodyBytes, sig, user) {
		msg := errForged.Error()
		if !mine {
			msg += ", or the replicas do not all share the same leasehttp.WithReleaseKey"
		}
		h.fail(w, http.StatusForbidden, msg)
		return
	}
	if !time.Now().Before(hd.expires) {
		h.fail(w, http.StatusForbidden, "release handle expired: its lease already ended by its TTL, and its key was deleted or stops working by itself")
		return
	}
	if mine {
		h.m.Release(hd.leaseID()) // false: already released, nothing to do
	} else if hd.keyID != "" {
		err := h.m.ReleaseForeign(lease.ForeignLease{LeaseID: hd.leaseID(), KeyID: hd.keyID, User: user, ServerExpires: hd.serverExpires})
		if errors.Is(err, lease.ErrClosed) {
			h.fail(w, http.StatusServiceUnavailable, "the credential service is shutting down; the key expires by itself")
			return
		}
		if err != nil {
			h.logger.LogAttrs(r.Context(), slog.LevelError, "leasehttp: could not release a lease issued by another replica", slog.String("err", err.Error()))
			h.fail(w, http.StatusInternalServerError, "internal error: the release was not recorded; the key expires by itself")
			return
		}
	}
	// A grant token held elsewhere has no key to delete: it expires by
	// its TTL.
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// errorJSON is every error's body.
type errorJSON struct {
	Error      string `json:"error"`
	RetryAfter int64  `json:"retry_after,omitempty"`
}

func (h *Handler) fail(w http.ResponseWriter, status int, msg string) {
	h.write(w, status, errorJSON{Error: msg})
}

func (h *Handler) write(w http.ResponseWriter, status int, v errorJSON) {
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
