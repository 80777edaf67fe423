// Package browsertest starts a real, headless Chromium for tests that drive
// a page with chromedp, and keeps what the page wrote to its console for
// failure messages and for checks that no secret reached it:
//
//	b := browsertest.Start(t) // skips without Chromium; fails under DGLEASE_REQUIRE_TOOLS=1
//	b.ShowOnFailure(`document.getElementById('status').textContent`)
//	b.Do(chromedp.Navigate(ts.URL), chromedp.WaitVisible(chromedp.ID("ready")))
//	got := browsertest.Eval[string](b, `doSomething()`) // awaits a promise
//	testenv.NoSecret(t, "browser console", b.Console(), secret)
//
// Every wait shares one deadline, Timeout after Start: a safety net for a
// hung browser, not a performance assertion. Chromium and its temporary
// profile are gone when the test's cleanups have run.
package browsertest

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/dglease/dglease/internal/testenv"
)

// Timeout bounds everything a test waits for in the browser, from Start on.
const Timeout = 60 * time.Second

// describeTimeout bounds each ShowOnFailure expression's evaluation.
const describeTimeout = 2 * time.Second

// Browser is one headless Chromium with one tab, started by Start for one
// test. Its methods that drive the page are for the test's goroutine;
// Console, ShowOnFailure and Describe are safe from any goroutine (a
// handler's, say).
type Browser struct {
	t        testing.TB
	ctx      context.Context // the tab's
	deadline time.Time
	console  *consoleLog

	mu   sync.Mutex
	show []string // ShowOnFailure expressions
}

// Start starts a fresh headless Chromium (its own temporary profile, a fake
// camera and microphone that need no permission prompt) with one blank
// tab, and stops it in t's cleanup. Without Chromium the test is skipped,
// or fails under DGLEASE_REQUIRE_TOOLS=1 (see FindChromium). Call it after starting the
// servers the page talks to, so that Chromium is stopped before they are.
func Start(t testing.TB) *Browser {
	t.Helper()
	chromium := FindChromium(t)

	// The browser outlives the waits by a little, so that a failure can
	// still show what the page says.
	ctx, cancel := context.WithTimeout(context.Background(), Timeout+10*time.Second)
	// chromedp starts Chromium with a fresh temporary --user-data-dir and
	// removes it when the allocator is cancelled.
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
	)
	console := &consoleLog{}
	tabCtx, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithListener(console.listen))
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc() // kills Chromium and waits for it
		cancel()
	})
	b := &Browser{t: t, ctx: tabCtx, deadline: time.Now().Add(Timeout), console: console}
	// The first run starts Chromium and the tab, which live as long as the
	// context it is given: the tab's, not a wait's shorter one.
	if err := chromedp.Do(tabCtx); err != nil {
		t.Fatalf("browsertest: start Chromium (%s): %v", chromium, err)
	}
	return b
}

// FindChromium returns the path of Chromium (or Chrome) on PATH. Without
// one the test is skipped, or fails under DGLEASE_REQUIRE_TOOLS=1, which
// .ci/run sets once it has installed Chromium (testenv.Missing).
func FindChromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	testenv.Missing(t, "no Chromium found (install Debian's chromium package): skipping the real-browser test")
	return ""
}

// Context returns the tab's context, for chromedp calls the other methods
// do not cover. It ends in the test's cleanup, a little after the deadline
// the other methods wait with: give a wait its own deadline.
func (b *Browser) Context() context.Context { return b.ctx }

// Deadline returns when the waits of Do, Run and Eval give up: Timeout
// after Start.
func (b *Browser) Deadline() time.Time { return b.deadline }

// Do runs actions in the tab, in order, until the deadline; on failure it
// ends the test with the error and Describe.
func (b *Browser) Do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithDeadline(b.ctx, b.deadline)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("browser: %v\n%s", err, b.Describe())
	}
}

// Run runs one action in b's tab until b's deadline and returns its
// result; on failure it ends the test with the error and b.Describe.
// (A function, not a method: methods cannot have type parameters.)
func Run[T any](b *Browser, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithDeadline(b.ctx, b.deadline)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Fatalf("browser: %v\n%s", err, b.Describe())
	}
	return v
}

// Eval evaluates the JavaScript expression in b's page, awaits it if it is
// a promise, and decodes its value (JSON) into T, as chromedp.Evaluate
// does; an exception or a rejection ends the test with b.Describe. To
// look at a rejection instead, catch it in the expression and return it
// as a value.
func Eval[T any](b *Browser, expression string) T {
	b.t.Helper()
	return Run(b, chromedp.Evaluate[T](expression, chromedp.EvalAwaitPromise))
}

// ShowOnFailure adds a JavaScript expression whose value Describe shows,
// e.g. the text of the page's status element, so that a failure says what
// the page showed.
func (b *Browser) ShowOnFailure(expression string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.show = append(b.show, expression)
}

// Console returns what the page wrote to its console so far, one message
// a line: console API calls (with the properties of logged objects),
// uncaught exceptions and the browser's own log (network errors, CORS
// refusals), or "(empty)". CheckNoSecret searches it for secrets.
func (b *Browser) Console() string { return b.console.String() }

// CheckNoSecret fails the test if any of secrets (credentials the page was
// handed) reached the page's console or the text it shows.
func (b *Browser) CheckNoSecret(secrets ...string) {
	b.t.Helper()
	testenv.NoSecret(b.t, "browser console", b.Console(), secrets...)
	testenv.NoSecret(b.t, "page text", Eval[string](b, `document.body ? document.body.innerText : ''`), secrets...)
}

// Describe returns the values of the ShowOnFailure expressions and the
// console, for failure messages. It waits for the page a short while even
// past the deadline.
func (b *Browser) Describe() string {
	b.mu.Lock()
	show := append([]string(nil), b.show...)
	b.mu.Unlock()
	var s strings.Builder
	for _, expr := range show {
		ctx, cancel := context.WithTimeout(b.ctx, describeTimeout)
		v, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](expr))
		cancel()
		if err != nil {
			fmt.Fprintf(&s, "%s: (unreadable: %v)\n", expr, err)
			continue
		}
		fmt.Fprintf(&s, "%s: %s\n", expr, v)
	}
	fmt.Fprintf(&s, "browser console:\n%s", b.console)
	return s.String()
}

// consoleLog collects the page's console output; Chromium's events arrive
// on chromedp's goroutines.
type consoleLog struct {
	mu    sync.Mutex
	lines []string
}

// listen is a chromedp listener: it must return fast.
func (c *consoleLog) listen(ev any) {
	var line string
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		var args []string
		for _, a := range ev.Args {
			args = append(args, remote(a))
		}
		line = fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " "))
	case *runtime.EventExceptionThrown:
		line = "exception: " + ev.ExceptionDetails.Text
		if ex := ev.ExceptionDetails.Exception; ex != nil {
			line += " " + ex.Description
		}
	case *cdplog.EventEntryAdded:
		e := ev.Entry
		if e == nil {
			return
		}
		line = fmt.Sprintf("browser %s (%s): %s", e.Level, e.Source, e.Text)
		if e.URL != "" {
			line += " [" + e.URL + "]"
		}
	default:
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lines = append(c.lines, line)
}

// remote is a console argument as text: a primitive's JSON value, else
// its description and the properties of its preview.
func remote(a *runtime.RemoteObject) string {
	if len(a.Value) > 0 {
		return string(a.Value)
	}
	s := a.Description
	if s == "" {
		s = string(a.UnserializableValue)
	}
	if p := a.Preview; p != nil && len(p.Properties) > 0 {
		var props []string
		for _, pp := range p.Properties {
			props = append(props, pp.Name+": "+pp.Value)
		}
		s += " {" + strings.Join(props, ", ") + "}"
	}
	return s
}

func (c *consoleLog) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.lines) == 0 {
		return "(empty)\n"
	}
	return strings.Join(c.lines, "\n") + "\n"
}
