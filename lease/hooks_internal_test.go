package lease

import (
	"testing"
	"time"
)

// BenchmarkHookCall measures what a synchronous hook adds to the path it
// runs on: one call of a no-op hook, with its panic guard.
func BenchmarkHookCall(b *testing.B) {
	h := &hookSet{}
	h.add(Hooks{OnRelease: func(Event) {}})
	e := Event{Time: time.Now(), User: "bench", LeaseID: "0123456789abcdef", KeyID: "key", Reason: ReasonReleased}
	for b.Loop() {
		h.run(h.release, e)
	}
}
