package lease_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/dglease/dglease/keys/keystest"
	"github.com/dglease/dglease/lease"
)

// A backend leases a short-lived usage:write key per user stream and
// releases it once the stream is open; the key is deleted in the
// background.
func ExampleManager_Acquire() {
	srv, err := keystest.Start(keystest.WithoutListener()) // a fake Deepgram; use keys.New for the real one
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	leases, err := lease.New(srv.Client(), lease.WithTTL(30*time.Second))
	if err != nil {
		log.Fatal(err)
	}

	l, err := leases.Acquire(context.Background(), "user-42")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("secret length:", len(l.Secret()))
	fmt.Println("live keys:", len(srv.LiveKeys())-1) // minus the admin key
	l.Release()                                      // returns at once

	if err := leases.Close(context.Background()); err != nil { // waits for the deleter
		log.Fatal(err)
	}
	fmt.Println("live keys after close:", len(srv.LiveKeys())-1)
	// Output:
	// secret length: 40
	// live keys: 1
	// live keys after close: 0
}

// With WithGrantTokens a lease is a Deepgram grant token (a JWT): one call,
// not revocable, expiring by itself.
func ExampleWithGrantTokens() {
	srv, err := keystest.Start(keystest.WithoutListener())
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	leases, err := lease.New(srv.Client(), lease.WithGrantTokens(), lease.WithTTL(30*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer leases.Close(context.Background())

	l, err := leases.Acquire(context.Background(), "user-42")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Release()
	// Send it as "Authorization: Bearer <secret>", or as the "bearer"
	// WebSocket subprotocol from a browser.
	fmt.Println("grant token:", !l.Revocable())
	fmt.Println("keys created:", len(srv.LiveKeys())-1)
	// Output:
	// grant token: true
	// keys created: 0
}

// Acquire beyond the per-user rate limit is denied before any network call,
// with the time to wait.
func ExampleWithRateLimit() {
	srv, err := keystest.Start(keystest.WithoutListener())
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	leases, err := lease.New(srv.Client(), lease.WithRateLimit(time.Minute, 1))
	if err != nil {
		log.Fatal(err)
	}
	defer leases.Close(context.Background())

	l, err := leases.Acquire(context.Background(), "user-42")
	if err != nil {
		log.Fatal(err)
	}
	l.Release()
	_, err = leases.Acquire(context.Background(), "user-42")
	var denied *lease.DeniedError
	if errors.As(err, &denied) {
		fmt.Println(errors.Is(err, lease.ErrDenied), "retry after about", denied.RetryAfter.Round(time.Minute))
	}
	// Output:
	// true retry after about 1m0s
}

// Sweep at start-up deletes what a crashed process left behind: expired
// keys carrying the library's marker, and nothing else.
func ExampleManager_Sweep() {
	srv, err := keystest.Start(keystest.WithoutListener())
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	// A process leased a key and died without deleting it.
	crashed, err := lease.New(srv.Client(), lease.WithTTL(time.Hour), lease.WithExpiryMargin(0))
	if err != nil {
		log.Fatal(err)
	}
	defer crashed.Close(context.Background())
	l, err := crashed.Acquire(context.Background(), "user-42")
	if err != nil {
		log.Fatal(err)
	}
	l.Detach()                    // neither released nor dropped: the process dies holding it
	srv.Advance(61 * time.Minute) // the fake's clock: the key has expired

	leases, err := lease.New(srv.Client())
	if err != nil {
		log.Fatal(err)
	}
	defer leases.Close(context.Background())
	n, err := leases.Sweep(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("swept:", n)
	// Output:
	// swept: 1
}

// The browser hand-off written by hand (lease/leasehttp does all of it,
// and signs its release handles for several replicas). The handler that
// issues a credential returns
// before the browser uses it and does not keep the *Lease: it calls Detach
// (a dropped lease would otherwise be found by leak detection and its key
// deleted early), and hands the page the lease ID with the WebSocket
// subprotocol. When the page reports its socket open, a second request,
// possibly on another goroutine, releases the lease by ID after checking
// its owner. A test then waits for the deletion with Flush.
func ExampleLease_Detach() {
	srv, err := keystest.Start(keystest.WithoutListener())
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	leases, err := lease.New(srv.Client())
	if err != nil {
		log.Fatal(err)
	}
	defer leases.Close(context.Background())
	user := func(r *http.Request) string { return "user-42" } // your session lookup

	issue := func(w http.ResponseWriter, r *http.Request) {
		// Not r.Context(): it ends when this handler returns, and the lease with it.
		l, err := leases.Acquire(context.WithoutCancel(r.Context()), user(r))
		if err != nil {
			http.Error(w, "no credential", http.StatusServiceUnavailable) // see DeniedError for 429
			return
		}
		l.Detach()
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(map[string]any{"lease": l.ID(), "protocols": l.Subprotocol()})
	}
	opened := func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if owner, ok := leases.Owner(id); !ok || owner != user(r) {
			http.NotFound(w, r)
			return
		}
		leases.Release(id) // Deepgram checked the key when the socket opened
		w.WriteHeader(http.StatusNoContent)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /credentials", issue)
	mux.HandleFunc("POST /credentials/{id}/opened", opened)
	// Pages on other origins must not mint credentials for a signed-in
	// visitor: refuse their cross-origin POSTs.
	h := http.NewCrossOriginProtection().Handler(mux)

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/credentials", nil))
	var handoff struct {
		Lease     string
		Protocols []string
	}
	if err := json.NewDecoder(rec.Body).Decode(&handoff); err != nil {
		log.Fatal(err)
	}
	fmt.Println("scheme:", handoff.Protocols[0], "live keys:", len(srv.LiveKeys())-1)

	// ... the page opens wss://api.deepgram.com/v1/listen with handoff.Protocols ...
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/credentials/"+handoff.Lease+"/opened", nil))
	if err := leases.Flush(context.Background()); err != nil { // wait for the deletion
		log.Fatal(err)
	}
	fmt.Println("opened:", rec.Code, "live keys:", len(srv.LiveKeys())-1)
	// Output:
	// scheme: token live keys: 1
	// opened: 204 live keys: 0
}
