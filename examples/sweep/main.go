// Command sweep deletes the Deepgram keys that dglease created and that
// have expired without being deleted: keys left behind by a process that
// was killed, or whose create answer was lost in flight. Keys without
// dglease's marker, and marked keys still in their lifetime, are never
// touched.
//
//	go run ./examples/sweep            # delete them
//	go run ./examples/sweep -dry-run   # only list them
//
// It prints a progress line every 10% of the deletions, one line per key
// (the first 10), and a summary; it exits non-zero if any deletion failed
// (run it again later: a failed key stays listed).
//
// Without DEEPGRAM_API_KEY it runs against the embedded fake Deepgram
// (keys/keystest, in memory), which it first seeds so there is something
// to see: marked keys whose create answer was lost (so no process could
// delete them) and that have since expired, two live leases, and two keys
// without the marker. With DEEPGRAM_API_KEY set (a key with keys:read and
// keys:write; DEEPGRAM_PROJECT_ID is optional when the key sees one
// project) it sweeps that real project. It never prints a secret.
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
		fmt.Fprintln(os.Stderr, "sweep:", err)
		os.Exit(1)
	}
}

// run is the program; env is os.Getenv outside tests.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, env func(string) string) error {
	fs := flag.NewFlagSet("sweep", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dryRun := fs.Bool("dry-run", false, "list the expired keys without deleting them")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}

	if apiKey := env("DEEPGRAM_API_KEY"); apiKey != "" {
		client, err := keys.New(apiKey, env("DEEPGRAM_PROJECT_ID"))
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, "Using the real Deepgram (DEEPGRAM_API_KEY is set).")
		_, err = sweep(ctx, client, *dryRun, stdout)
		return err
	}

	srv, err := keystest.Start(keystest.WithoutListener())
	if err != nil {
		return err
	}
	defer srv.Close()
	fmt.Fprintln(stdout, "DEEPGRAM_API_KEY is not set: using the embedded fake Deepgram (in memory), seeded with keys to sweep.")
	endLive, err := seed(ctx, srv, stdout)
	if err != nil {
		return err
	}
	_, sweepErr := sweep(ctx, srv.Client(), *dryRun, stdout)
	report(srv, stdout)
	if err := endLive(); err != nil {
		return err
	}
	return sweepErr
}

// Seeded on the fake.
const (
	seedLost = 20 // marked keys whose create answer was lost, then expired
	seedLive = 2  // live leases, held during the sweep
)

// seed fills the fake with keys to sweep and keys to leave alone. The
// returned function releases the live leases and closes their Manager.
func seed(ctx context.Context, srv *keystest.Server, out io.Writer) (endLive func() error, err error) {
	// Two keys that are not dglease's: an expired one and a permanent one.
	srv.AddKey(keys.Spec{Comment: "CI key, not dglease's", Scopes: []string{"usage:write"}, TTL: time.Second})
	srv.AddKey(keys.Spec{Comment: "backend key, not dglease's", Scopes: []string{"usage:write"}})

	// Keys no process can delete: the fake creates them (with dglease's
	// marker) but loses the answers, so Acquire fails and the Manager
	// never learns their IDs, as after a crash. Only Sweep can find them.
	lost, err := lease.New(srv.Client())
	if err != nil {
		return nil, err
	}
	srv.LoseAnswer(keystest.OpCreate, seedLost)
	for i := range seedLost {
		if _, err := lost.Acquire(ctx, fmt.Sprintf("user-%02d", i+1)); err == nil {
			return nil, fmt.Errorf("seeding: create %d was meant to lose its answer", i+1)
		}
	}
	if err := lost.Close(ctx); err != nil {
		return nil, err
	}
	srv.Advance(time.Minute) // the fake's clock: their expiry (TTL plus margin, 15s) has passed

	// Live leases: marked, but in their lifetime.
	live, err := lease.New(srv.Client())
	if err != nil {
		return nil, err
	}
	held := make([]*lease.Lease, 0, seedLive)
	for i := range seedLive {
		l, err := live.Acquire(ctx, fmt.Sprintf("live-user-%d", i+1))
		if err != nil {
			_ = live.Close(ctx)
			return nil, err
		}
		held = append(held, l)
	}
	fmt.Fprintf(out, "Seeded the fake with %d keys that carry dglease's marker but whose creates lost their answers, expired since\n"+
		"(the fake's clock was moved a minute ahead); %d live leases; 2 keys without the marker (1 expired).\n", seedLost, seedLive)
	return func() error {
		for _, l := range held {
			l.Release()
		}
		return live.Close(context.WithoutCancel(ctx))
	}, nil
}

// listLimit is how many keys sweep names one by one.
const listLimit = 10

// sweep runs lease.Sweep on c and prints progress, the keys and a summary.
func sweep(ctx context.Context, c lease.KeyService, dryRun bool, out io.Writer) (lease.SweepResult, error) {
	opts := lease.SweepOptions{
		DryRun: dryRun,
		// Progress calls are serialized; print one line per 10%.
		Progress: func(done, total int) {
			if done == 1 {
				fmt.Fprintf(out, "Deleting %d expired keys that carry dglease's marker:\n", total)
			}
			step := max(1, (total+9)/10)
			if done%step == 0 || done == total {
				fmt.Fprintf(out, "  %d/%d (%d%%)\n", done, total, done*100/total)
			}
		},
	}
	res, err := lease.Sweep(ctx, c, opts)
	if res.Listed == 0 && err != nil {
		return res, err // listing failed: nothing was done
	}

	if len(res.Expired) == 0 {
		fmt.Fprintln(out, "No expired key carries dglease's marker.")
	} else {
		fmt.Fprintln(out, "Expired keys that carry dglease's marker:")
	}
	// Every failure is named; of the rest, the first listLimit.
	failed := map[string]error{}
	for _, f := range res.Failed {
		failed[f.KeyID] = f.Err
	}
	named := 0
	for _, k := range res.Expired {
		fail := failed[k.ID]
		if fail == nil && named == listLimit {
			continue
		}
		outcome := "deleted"
		switch {
		case dryRun:
			outcome = "would be deleted"
		case fail != nil:
			outcome = "NOT deleted: " + fail.Error()
		}
		if fail == nil {
			named++
		}
		user := "?"
		if m, err := lease.ParseMarker(k.Comment, k.Tags); err == nil {
			user = m.User
		}
		fmt.Fprintf(out, "  key %s (user %s, expired %s): %s\n", k.ID, user, k.Expires.Format(time.RFC3339), outcome)
	}
	if more := len(res.Expired) - len(res.Failed) - listLimit; more > 0 {
		fmt.Fprintf(out, "  ... and %d more\n", more)
	}

	deleted := fmt.Sprint(res.Deleted)
	if dryRun {
		deleted = "0 (dry run)"
	}
	fmt.Fprintf(out, "Summary: listed %d (the project's expired keys), marked %d, expired %d, deleted %s, failed %d.\n",
		res.Listed, res.Marked, len(res.Expired), deleted, len(res.Failed))
	if err != nil {
		// The failed keys are named above; err joins one error per key.
		return res, fmt.Errorf("%d of %d deletions failed (see above); run again later", len(res.Failed), len(res.Expired))
	}
	return res, nil
}

// report shows what is left on the fake, sorted by kind.
func report(srv *keystest.Server, out io.Writer) {
	var markedGone, markedExpired, markedLive, otherExpired, otherLive int
	for _, k := range srv.Keys() {
		if k.Key.ID == srv.AdminKeyID() {
			continue
		}
		_, err := lease.ParseMarker(k.Key.Comment, k.Key.Tags)
		marked := err == nil
		switch {
		case marked && k.Status == keystest.StatusDeleted:
			markedGone++
		case marked && k.Status == keystest.StatusExpired:
			markedExpired++
		case marked:
			markedLive++
		case k.Status == keystest.StatusExpired:
			otherExpired++
		case k.Status == keystest.StatusActive:
			otherLive++
		}
	}
	fmt.Fprintf(out, "On the fake now: %d marked keys deleted, %d marked expired keys left, %d live leased keys untouched, %d keys without the marker untouched (%d expired).\n",
		markedGone, markedExpired, markedLive, otherExpired+otherLive, otherExpired)
}
