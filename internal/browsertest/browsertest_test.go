package browsertest_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/dglease/dglease/internal/browsertest"
)

const page = `<!doctype html>
<meta charset="utf-8">
<title>browsertest</title>
<p id="status">loading</p>
<script>
console.log('plain', 42);
console.info({name: 'object-property'});
document.getElementById('status').textContent = 'ready';
setTimeout(() => { throw new Error('thrown-on-purpose'); });
</script>
`

// TestStart loads a page and reads back what it wrote: console calls (an
// object's properties included), an uncaught exception, an evaluated
// promise, and the ShowOnFailure values. Chromium sends a console event
// before the answer to a later command, and chromedp hands them on in that
// order, so the console is complete once the last Eval has returned.
func TestStart(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(page))
	}))
	t.Cleanup(ts.Close)

	b := browsertest.Start(t)
	b.ShowOnFailure(`document.getElementById('status').textContent`)
	b.Do(
		chromedp.Navigate(ts.URL),
		chromedp.Poll[chromedp.Void](`document.getElementById('status').textContent === 'ready'`),
	)
	if got := browsertest.Eval[int](b, `fetch('/missing').then((r) => r.status)`); got != http.StatusNotFound {
		t.Errorf("Eval of a promise = %d, want 404", got)
	}
	// The exception is thrown by a timer set at load; one set now fires
	// after it.
	browsertest.Eval[bool](b, `new Promise((resolve) => setTimeout(() => resolve(true)))`)

	console := b.Console()
	for _, want := range []string{
		`console.log: "plain" 42`,
		`console.info: Object {name: object-property}`,
		`exception: Uncaught Error: thrown-on-purpose`,
	} {
		if !strings.Contains(console, want) {
			t.Errorf("console lacks %q:\n%s", want, console)
		}
	}
	if d := b.Describe(); !strings.Contains(d, `textContent: "ready"`) || !strings.Contains(d, "browser console:\n") {
		t.Errorf("Describe() = %q, want the status element's text and the console", d)
	}
}
