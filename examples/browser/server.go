package main

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/dglease/dglease/lease"
	"github.com/dglease/dglease/lease/leasehttp"
	"github.com/dglease/dglease/lease/leaseotel"
)

//go:embed static
var static embed.FS

// config is what newServer needs. Keys and ListenURL are required.
type config struct {
	// Keys mints and deletes credentials: a *keys.Client, or the fake's.
	Keys lease.KeyService
	// ListenURL is the WebSocket URL the page streams to, without query.
	ListenURL string
	// Backend names the service for the page, e.g. "Deepgram".
	Backend string
	// Grant leases grant tokens instead of API keys.
	Grant bool
	// TTL is how long a credential lives if the page never reports its
	// socket open. Zero means lease.DefaultTTL.
	TTL time.Duration
	// RateEvery and Burst limit each visitor's credentials: one per
	// RateEvery on average, Burst at once (lease.WithRateLimit); a zero
	// RateEvery turns the limit off. A zero Burst keeps the library's
	// default limit (and ignores RateEvery).
	RateEvery time.Duration
	Burst     int
	// Logger receives lease events, failures included. Nil means
	// slog.Default().
	Logger *slog.Logger
	// Metrics, when set, receives the lease lifecycle as OpenTelemetry
	// metrics (lease/leaseotel).
	Metrics metric.MeterProvider
	// SDKBundle, when set, is the path of Deepgram's browser SDK bundle
	// (@deepgram/sdk's dist/browser/index.global.js, installed by npm), which
	// the page then offers as a second way to stream.
	SDKBundle string
	// Limiter, when set, keeps the visitors' rate limit and caps where
	// several copies of the demo share them (lease/leaseredis); nil keeps
	// them in this process.
	Limiter lease.Limiter
	// ReleaseKey, when set, signs the release handles
	// (leasehttp.WithReleaseKey): at least leasehttp.MinReleaseKeyLen
	// random bytes, the same on every copy of the demo behind one load
	// balancer, so that a page's release is accepted by whichever copy
	// receives it. Nil means a random key of this process's own: only the
	// copy that issued a credential can release it.
	ReleaseKey []byte
	// KeyStatus, when set, reports a key's state on the Deepgram side
	// ("active", "expired", "deleted"), so the page can show the deletion
	// happen. Only the fake can answer that cheaply.
	KeyStatus func(keyID string) (status string, ok bool)
	// Usage reads back from Deepgram how much audio each visitor streamed
	// (lease.StreamedAudio): a *keys.Client whose key has usage:read. Nil
	// means Keys, if it can read usage (a *keys.Client can; it needs
	// usage:read, which the fake's admin key has).
	Usage lease.UsageReader
}

// server is the demo's backend: it serves the page, hands credentials to
// visitors through a leasehttp.Handler mounted at /api/deepgram/, and
// answers the page's own questions (/api/about, /api/status, /api/usage).
// It is an http.Handler, safe for concurrent use; Close it to delete
// whatever is still leased.
type server struct {
	cfg     config
	leases  *lease.Manager
	gauges  metric.Registration // nil without config.Metrics
	ledger  *ledger
	handler http.Handler
	// Built once in newServer: the page's CSP, the page itself and the
	// answer to GET /api/about.
	csp   string
	index []byte
	about about
}

// newServer builds the backend. It makes no network call.
func newServer(cfg config) (*server, error) {
	if cfg.Keys == nil {
		return nil, errors.New("browser: config.Keys is required")
	}
	u, err := url.Parse(cfg.ListenURL)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return nil, fmt.Errorf("browser: config.ListenURL %q is not a ws:// or wss:// URL", cfg.ListenURL)
	}
	if cfg.Backend == "" {
		cfg.Backend = "Deepgram"
	}
	if cfg.TTL == 0 {
		cfg.TTL = lease.DefaultTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if r, ok := cfg.Keys.(lease.UsageReader); ok && cfg.Usage == nil {
		cfg.Usage = r
	}
	s := &server{cfg: cfg, ledger: newLedger(maxEnded)}
	if s.index, err = static.ReadFile("static/index.html"); err != nil {
		return nil, err
	}
	s.about = about{
		Backend:    cfg.Backend,
		Kind:       s.kind(),
		TTLSeconds: int(math.Ceil(cfg.TTL.Seconds())),
		ListenURL:  cfg.ListenURL,
		Usage:      cfg.Usage != nil,
		SDK:        cfg.SDKBundle != "",
	}

	opts := []lease.Option{
		lease.WithTTL(cfg.TTL),
		// Log every event, and keep the ledger (who holds which lease, for
		// the status route) up to date however a lease ends: release, TTL,
		// shutdown. No goroutine per lease.
		lease.WithHooks(lease.LogHooks(cfg.Logger), s.ledger.hooks()),
	}
	if cfg.Limiter != nil {
		opts = append(opts, lease.WithLimiter(cfg.Limiter))
	}
	if cfg.Metrics != nil {
		metrics, err := leaseotel.Hooks(cfg.Metrics)
		if err != nil {
			return nil, err
		}
		opts = append(opts, lease.WithHooks(metrics))
	}
	if cfg.Burst != 0 { // else the library's default limit
		opts = append(opts, lease.WithRateLimit(cfg.RateEvery, cfg.Burst))
	}
	if cfg.Grant {
		opts = append(opts, lease.WithGrantTokens())
	}
	if s.leases, err = lease.New(cfg.Keys, opts...); err != nil {
		return nil, err
	}
	// POST /api/deepgram/credential, POST /api/deepgram/release and GET
	// /api/deepgram/client.js, for the visitor the session cookie names.
	// Several copies of the demo behind one load balancer share a release
	// key (DEMO_RELEASE_KEY), so that each accepts the others' handles.
	hopts := []leasehttp.Option{leasehttp.WithLogger(cfg.Logger)}
	if cfg.ReleaseKey != nil {
		hopts = append(hopts, leasehttp.WithReleaseKey(cfg.ReleaseKey))
	}
	credentials, err := leasehttp.New(s.leases, identify, hopts...)
	if err == nil && cfg.Metrics != nil {
		s.gauges, err = leaseotel.Observe(s.leases, cfg.Metrics)
	}
	if err != nil {
		_ = s.leases.Close(context.Background()) // nothing was leased yet
		return nil, err
	}

	// The page may connect to itself and to the listen endpoint, nothing
	// else: no CDN, no inline script. Its module imports client.js from
	// this origin.
	s.csp = "default-src 'self'; connect-src 'self' " + u.Scheme + "://" + u.Host +
		"; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

	assets, _ := fs.Sub(static, "static")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.handleIndex)
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(assets)))
	if cfg.SDKBundle != "" {
		mux.HandleFunc("GET /static/deepgram-sdk.js", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
			http.ServeFile(w, r, cfg.SDKBundle)
		})
	}
	// leasehttp refuses cross-origin POSTs itself (http.CrossOriginProtection),
	// sibling subdomains included;
	// the demo's own routes are all GETs.
	mux.Handle("/api/deepgram/", http.StripPrefix("/api/deepgram", credentials))
	mux.HandleFunc("GET /api/about", s.handleAbout)
	mux.HandleFunc("GET /api/status/{lease_id}", s.handleStatus)
	mux.HandleFunc("GET /api/usage", s.handleUsage)
	s.handler = mux
	return s, nil
}

// ServeHTTP serves the page and its API.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", s.csp)
	s.handler.ServeHTTP(w, r)
}

// Sweep deletes expired keys left behind by an earlier run.
func (s *server) Sweep(ctx context.Context) (int, error) { return s.leases.Sweep(ctx) }

// Close refuses new credentials and deletes every one still leased.
func (s *server) Close(ctx context.Context) error {
	err := s.leases.Close(ctx)
	if s.gauges != nil {
		err = errors.Join(err, s.gauges.Unregister())
	}
	return err
}

func (s *server) handleIndex(w http.ResponseWriter, r *http.Request) {
	startSession(w, r) // the visitor's credentials are theirs from now on
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(s.index)
}

// about tells the page what it is talking to.
type about struct {
	Backend    string `json:"backend"`
	Kind       string `json:"kind"`
	TTLSeconds int    `json:"ttl_seconds"`
	// ListenURL is the WebSocket URL to stream to, without query.
	ListenURL string `json:"listen_url"`
	// Usage says whether GET /api/usage can read usage back.
	Usage bool `json:"usage"`
	// SDK says whether the page may stream with Deepgram's browser SDK.
	SDK bool `json:"sdk"`
}

func (s *server) handleAbout(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.about)
}

// kind names the credentials this server issues, for the page: the first
// element of their WebSocket subprotocol list (see lease.Lease.Subprotocol).
func (s *server) kind() string {
	if s.cfg.Grant {
		return "bearer"
	}
	return "token"
}

// apiError is every error answer of the demo's own routes (leasehttp's
// have the same shape).
type apiError struct {
	Error string `json:"error"`
}

// status is the answer to GET /api/status/{lease_id}.
type status struct {
	LeaseID string `json:"lease_id"`
	// KeyID is the Deepgram key's ID; grant tokens have none.
	KeyID string `json:"key_id,omitempty"`
	// Lease is "live", or how the lease ended: "released", "expired",
	// "manager closed", ...
	Lease string `json:"lease"`
	// Ends is when the lease ends by itself if never released.
	Ends time.Time `json:"ends"`
	// Credential is the credential's state: "active", "deleted" or
	// "expired" when known; "deletion requested" or "deletion failed"
	// when only the lease's side is known.
	Credential string `json:"credential"`
	// Source says where Credential comes from: "deepgram" (the service
	// was asked), "token expiry" (grant tokens only expire) or "lease"
	// (this backend's own records).
	Source string `json:"source"`
	// Expires is when the credential stops working on Deepgram's side.
	Expires time.Time `json:"expires"`
}

// handleStatus answers GET /api/status/{lease_id}. The page learns its
// lease ID from client.js's connect (onCredential). Only the visitor a
// lease was issued to may ask about it; to anyone else it does not exist.
func (s *server) handleStatus(w http.ResponseWriter, r *http.Request) {
	visitor, _ := visitorOf(r)
	id := r.PathValue("lease_id")
	h, found := s.ledger.lookup(visitor, id)
	if !found {
		writeJSON(w, http.StatusNotFound, apiError{Error: "No such credential."})
		return
	}
	writeJSON(w, http.StatusOK, s.statusOf(id, h))
}

// statusOf describes a handed-out credential as of now.
func (s *server) statusOf(id string, h handout) status {
	_, live := s.leases.Owner(id)
	st := status{LeaseID: id, KeyID: h.keyID, Lease: "live", Ends: h.expires, Expires: h.serverExpires}
	switch {
	case live:
	case h.reason != 0:
		st.Lease = h.reason.String()
	default:
		st.Lease = "ended" // its OnRelease hook is still running
	}
	switch {
	case s.cfg.Grant:
		st.Source = "token expiry"
		st.Credential = "active"
		if !time.Now().Before(h.serverExpires) {
			st.Credential = "expired"
		}
	case s.cfg.KeyStatus != nil:
		st.Source = "deepgram"
		var ok bool
		if st.Credential, ok = s.cfg.KeyStatus(h.keyID); !ok {
			st.Credential = "unknown"
		}
	default:
		st.Source = "lease"
		switch {
		case live:
			st.Credential = "active"
		case h.deleteFailed:
			st.Credential = "deletion failed"
		case !time.Now().Before(h.serverExpires):
			st.Credential = "expired"
		default:
			st.Credential = "deletion requested"
		}
	}
	return st
}

// writeJSON answers v as JSON. API answers are never cached: they describe
// a moment.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
