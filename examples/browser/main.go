// Command browser is the product's main use, end to end: a web page streams
// the microphone to Deepgram's /v1/listen with a credential that its backend
// leased for this visitor alone, and the backend deletes the credential as
// soon as the page reports its WebSocket open. The page shows each step of
// the credential's life (issued, socket open, released, deleted) while the
// transcript keeps arriving: the stream outlives its key.
//
// Run it against the embedded fake Deepgram (no account needed):
//
//	go run ./examples/browser
//
// and open the URL it prints. Against the real service, with an API key
// that has keys:write (for -grant: member rights):
//
//	DEEPGRAM_API_KEY=... DEEPGRAM_PROJECT_ID=... go run ./examples/browser
//
// DEEPGRAM_PROJECT_ID is optional when the key sees exactly one project.
// Flags and environment:
//
//	-addr   address to serve the page on (default localhost:8080)
//	-grant  lease grant tokens (JWTs, not revocable) instead of API keys
//	-ttl    how long a credential lives if the page never reports (default 10s)
//	-redis  redis://host:port/db: share the visitors' limits with other
//	        copies of the demo through this Redis (lease/leaseredis);
//	        set DEMO_RELEASE_KEY too, the same on every copy
//	-sdk    Deepgram's browser SDK bundle (default: where npm ci in
//	        internal/conformance installs it); when present, the page
//	        offers it as a second way to stream
//
//	DEMO_RELEASE_KEY  (environment) the key that signs the pages' release
//	        handles: at least 32 random bytes in hex (openssl rand -hex 32),
//	        the same on every copy behind one load balancer (see -redis),
//	        so that a release reaching another copy than the one that
//	        issued the credential is accepted there. A value that is not
//	        hex, or is shorter, stops the demo at start-up; unset, each
//	        copy draws its own key (and -redis logs a warning)
//
// The browser never sees the project's API key. The backend mounts
// lease/leasehttp at /api/deepgram/: the page imports its client.js
// (GET /api/deepgram/client.js) and calls connect, which asks POST
// /api/deepgram/credential for a usage:write key (or grant token) that
// lives seconds, opens the WebSocket with it in the Sec-WebSocket-Protocol
// list (["token", key] or ["bearer", jwt]: browsers cannot set headers on
// a WebSocket), and reports the socket open to POST /api/deepgram/release,
// which deletes the key while the stream goes on. Each visitor is
// identified by a demo session cookie set when the page loads; see
// visitor.go for where a real application plugs in its own
// authentication. The rest is the demo's own:
//
//	GET /api/about             the backend's name, the listen URL, what the page may offer
//	GET /api/status/{lease}    one of the visitor's credentials: live, released, deleted on Deepgram's side
//	GET /api/usage[?from=day]  the audio the visitor streamed, read back from Deepgram by their tag
//	GET /metrics               the credentials' lifecycle (lease/leaseotel), Prometheus text format
package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/dglease/dglease/keys"
	"github.com/dglease/dglease/keys/keystest"
	"github.com/dglease/dglease/lease/leasehttp"
	"github.com/dglease/dglease/lease/leaseredis"
)

// deepgramListenURL is Deepgram's streaming endpoint.
const deepgramListenURL = "wss://api.deepgram.com/v1/listen"

// Per-visitor rate limit: two credentials at once, then one every ten
// seconds. Start, Stop, Start, Stop, Start within ten seconds and the
// third is refused: the page shows the 429 answer and when to retry.
const (
	visitorRateEvery = 10 * time.Second
	visitorBurst     = 2
)

// shutdownTimeout bounds the graceful shutdown: in-flight requests, then
// the deletion of every credential still leased.
const shutdownTimeout = 15 * time.Second

func main() {
	addr := flag.String("addr", "localhost:8080", "address to serve the page on")
	grant := flag.Bool("grant", false, "lease grant tokens instead of API keys")
	ttl := flag.Duration("ttl", 10*time.Second, "how long a credential lives if the page never reports its socket open")
	redisURL := flag.String("redis", "", "share the visitors' limits with other copies of the demo through this Redis (redis://host:port/db)")
	sdk := flag.String("sdk", defaultSDKBundle, "Deepgram's browser SDK bundle, offered on the page as a second way to stream when the file exists (npm ci in internal/conformance installs it)")
	flag.Parse()

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, logger, *addr, *grant, *ttl, *redisURL, *sdk); err != nil {
		logger.Error("browser example failed", "err", err)
		stop()
		os.Exit(1)
	}
}

// defaultSDKBundle is where npm ci in internal/conformance puts Deepgram's
// browser SDK, relative to the module root (where go run runs).
const defaultSDKBundle = "internal/conformance/node_modules/@deepgram/sdk/dist/browser/index.global.js"

// run serves the demo on addr until ctx ends, then shuts down gracefully:
// it stops taking requests and deletes every credential still leased.
func run(ctx context.Context, logger *slog.Logger, addr string, grant bool, ttl time.Duration, redisURL, sdkBundle string) error {
	releaseKey, err := releaseKeyFromEnv() // a bad one stops us before anything starts
	if err != nil {
		return err
	}
	cfg, closeBackend, err := backend(logger)
	if err != nil {
		return err
	}
	defer closeBackend()
	cfg.Grant, cfg.TTL, cfg.RateEvery, cfg.Burst, cfg.Logger = grant, ttl, visitorRateEvery, visitorBurst, logger
	cfg.ReleaseKey = releaseKey

	// The lease lifecycle as metrics, served at /metrics in the Prometheus
	// text format, on a registry of our own (not the process-wide one).
	registry := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(registry), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo())
	if err != nil {
		return err
	}
	cfg.Metrics = sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))

	// Deepgram's own browser SDK, if installed: a second way to stream.
	if _, err := os.Stat(sdkBundle); sdkBundle != "" && err == nil {
		cfg.SDKBundle = sdkBundle
		logger.Info("the page offers Deepgram's browser SDK as a second way to stream", "bundle", sdkBundle)
	}

	// With -redis, the visitors' rate limit and caps hold across every copy
	// of the demo that uses the same Redis (lease/leaseredis).
	if redisURL != "" {
		ropts, err := redis.ParseURL(redisURL)
		if err != nil {
			// Not err: go-redis quotes the whole URL, password included.
			return errors.New("-redis: not a valid redis:// or rediss:// URL (redis://[:password@]host:port/db)")
		}
		// Deadlines on the socket, and no resending of an admission that
		// may have run (see leaseredis.New).
		ropts.ContextTimeoutEnabled, ropts.MaxRetries = true, -1
		rdb := redis.NewClient(ropts)
		defer rdb.Close()
		limiter := leaseredis.New(rdb, leaseredis.WithPrefix("dglease-demo"))
		cfg.Limiter = limiter
		logger.Info("limits shared through Redis", "addr", ropts.Addr)
		if releaseKey == nil {
			logger.Warn(releaseKeyWarning)
		}
	}

	s, err := newServer(cfg)
	if err != nil {
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			logger.Error("some credentials could not be deleted; they expire on Deepgram's side", "err", err)
		}
	}()

	// Clean up after an earlier run that was killed before it could
	// delete its keys.
	sweepCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	n, err := s.Sweep(sweepCtx)
	cancel()
	if err != nil {
		logger.Warn("sweep failed", "err", err)
	} else if n > 0 {
		logger.Info("sweep deleted expired keys left by an earlier run", "deleted", n)
	}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	mux.Handle("/", s)
	hs := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	logger.Info("open the demo page", "url", pageURL(ln.Addr()))

	select {
	case err = <-served:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down: deleting credentials still leased")
	shutCtx, cancelShut := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancelShut()
	if err := hs.Shutdown(shutCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// releaseKeyEnv names the environment variable that holds the release key
// shared by every copy of the demo, in hex.
const releaseKeyEnv = "DEMO_RELEASE_KEY"

// releaseKeyWarning is logged at start-up with -redis when DEMO_RELEASE_KEY
// is not set.
const releaseKeyWarning = releaseKeyEnv + " is not set: until it is (the same key on every copy: openssl rand -hex 32), " +
	"a page's release that reaches another copy of the demo than the one that issued its credential is refused, " +
	"and the credential lives until its TTL"

// releaseKeyFromEnv returns the release key DEMO_RELEASE_KEY holds, nil
// when it is unset or empty, or an error that says what to set (never the
// value: it is a secret).
func releaseKeyFromEnv() ([]byte, error) {
	v := strings.TrimSpace(os.Getenv(releaseKeyEnv))
	if v == "" {
		return nil, nil
	}
	const set = "set it to at least 32 random bytes in hex, the same on every copy (openssl rand -hex 32)"
	// Not hex.DecodeString's error: it quotes the offending character.
	key, err := hex.DecodeString(v)
	if err != nil {
		return nil, fmt.Errorf("%s is not hex: %s", releaseKeyEnv, set)
	}
	if len(key) < leasehttp.MinReleaseKeyLen {
		return nil, fmt.Errorf("%s is %d bytes, too short: %s", releaseKeyEnv, len(key), set)
	}
	return key, nil
}

// backend picks the Deepgram to talk to: the real service when
// DEEPGRAM_API_KEY is set (DEEPGRAM_PROJECT_ID optional), else a fake
// started here, which the first log line announces. stop stops the fake.
func backend(logger *slog.Logger) (cfg config, stop func(), err error) {
	apiKey := os.Getenv("DEEPGRAM_API_KEY")
	if apiKey == "" {
		fake, err := keystest.Start()
		if err != nil {
			return config{}, nil, err
		}
		logger.Info("DEEPGRAM_API_KEY is not set: using the embedded fake Deepgram", "url", fake.URL)
		return config{
			Backend:   "the embedded fake Deepgram",
			Keys:      fake.Client(),
			ListenURL: fake.ListenURL(),
			KeyStatus: fakeKeyStatus(fake),
		}, fake.Close, nil
	}
	client, err := keys.New(apiKey, os.Getenv("DEEPGRAM_PROJECT_ID"))
	if err != nil {
		return config{}, nil, err
	}
	logger.Info("using Deepgram", "host", client.Host())
	return config{Backend: "Deepgram", Keys: client, ListenURL: deepgramListenURL}, func() {}, nil
}

// fakeKeyStatus reports a key's state as the fake Deepgram sees it, so the
// page can show the deletion actually happen.
func fakeKeyStatus(fake *keystest.Server) func(keyID string) (string, bool) {
	return func(keyID string) (string, bool) {
		k, ok := fake.Key(keyID)
		return string(k.Status), ok
	}
}

// pageURL is the URL a person opens for a listener's address.
func pageURL(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "http://" + addr.String() + "/"
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port) + "/"
}
