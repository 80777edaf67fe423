package keystest_test

import (
	"testing"
	"time"

	"github.com/dglease/dglease/keys"
	"github.com/dglease/dglease/keys/keystest"
)

// BenchmarkCreateDelete measures one keys.Client Create plus Delete
// through the in-memory Transport.
func BenchmarkCreateDelete(b *testing.B) {
	s := keystest.NewServer(b, keystest.WithoutListener())
	c := s.Client()
	ctx := b.Context()
	spec := keys.Spec{Comment: "bench", Scopes: []string{"usage:write"}, TTL: time.Minute}
	b.ReportAllocs()
	for b.Loop() {
		k, err := c.Create(ctx, spec)
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Delete(ctx, k.ID); err != nil {
			b.Fatal(err)
		}
	}
}
