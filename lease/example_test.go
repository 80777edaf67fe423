package lease_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"golang.org/x/time/rate"

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
	fmt.Println("grant token:", l.GrantToken())
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

	leases, err := lease.New(srv.Client(), lease.WithRateLimit(rate.Every(time.Minute), 1))
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
		fmt.Println(errors.Is(err, lease.ErrRateLimited), "retry after about", denied.RetryAfter.Round(time.Minute))
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
	if _, err := crashed.Acquire(context.Background(), "user-42"); err != nil {
		log.Fatal(err)
	}
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
