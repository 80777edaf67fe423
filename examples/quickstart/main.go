// Command quickstart is the smallest end-to-end use of dglease: it leases a
// short-lived Deepgram key for one user, releases it, and shows that the
// key is deleted.
//
//	go run ./examples/quickstart
//
// Without DEEPGRAM_API_KEY it runs against the embedded fake Deepgram
// (keys/keystest, in memory) and says so on its first line. With
// DEEPGRAM_API_KEY set (a key with keys:write; DEEPGRAM_PROJECT_ID is
// optional when the key sees one project) it uses the real Deepgram and
// creates, then deletes, one real key. It never prints a secret.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/dglease/dglease/keys"
	"github.com/dglease/dglease/keys/keystest"
	"github.com/dglease/dglease/lease"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

// run is the program; env is os.Getenv outside tests.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, env func(string) string) error {
	fs := flag.NewFlagSet("quickstart", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}

	// 1. A client for Deepgram's key API: the real one, or the fake.
	var client *keys.Client
	var fake *keystest.Server
	if apiKey := env("DEEPGRAM_API_KEY"); apiKey != "" {
		c, err := keys.New(apiKey, env("DEEPGRAM_PROJECT_ID"))
		if err != nil {
			return err
		}
		client = c
		fmt.Fprintln(stdout, "Using the real Deepgram (DEEPGRAM_API_KEY is set).")
	} else {
		srv, err := keystest.Start(keystest.WithoutListener())
		if err != nil {
			return err
		}
		defer srv.Close()
		fake, client = srv, srv.Client()
		fmt.Fprintln(stdout, "DEEPGRAM_API_KEY is not set: using the embedded fake Deepgram (in memory).")
	}

	// 2. A Manager: usage:write keys that live 10s, deleted however they end.
	leases, err := lease.New(client)
	if err != nil {
		return err
	}
	defer leases.Close(context.WithoutCancel(ctx)) // on an early return too; Close is idempotent

	// 3. Lease a key for one user. Hand l.Secret() to that user only.
	l, err := leases.Acquire(ctx, "user-42")
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Leased key %s for %s: scope %s, lease ends %s (in %s).\n",
		l.KeyID(), l.User(), lease.DefaultScope, l.Expires().Format(time.RFC3339), time.Until(l.Expires()).Round(time.Second))
	fmt.Fprintf(stdout, "Deepgram itself expires the key at %s, even if no delete ever gets through.\n",
		l.ServerExpires().Format(time.RFC3339))
	if fake != nil {
		fmt.Fprintf(stdout, "The fake now holds %d live keys: the admin key and the leased one.\n", len(fake.LiveKeys()))
	}

	// 4. Release: returns at once; the key is deleted in the background.
	l.Release()
	fmt.Fprintln(stdout, "Released: the key is now being deleted in the background.")

	// 5. Close waits for the deleter and names any key it could not delete.
	if err := leases.Close(ctx); err != nil {
		return err
	}
	if fake == nil {
		fmt.Fprintf(stdout, "Manager closed without error: key %s is deleted.\n", l.KeyID())
		return nil
	}
	st, ok := fake.Key(l.KeyID())
	if !ok || st.Status != keystest.StatusDeleted {
		return fmt.Errorf("key %s is %q on the fake, not deleted", l.KeyID(), st.Status)
	}
	fmt.Fprintf(stdout, "Manager closed: key %s is %s on the fake; %d live key left (the admin key).\n",
		l.KeyID(), st.Status, len(fake.LiveKeys()))
	return nil
}
