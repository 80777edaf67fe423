package lease

import (
	"slices"
	"testing"
)

func (l *lru[T]) values() []T {
	var out []T
	for n := l.front; n != nil; n = n.next {
		out = append(out, n.v)
	}
	return out
}

// The list keeps the most recent first; evict forgets old entries that may
// go, keeps (and moves to the front) old ones that may not, stops at the
// first recent one, and does at most evictBatch per call.
func TestLRU(t *testing.T) {
	var l lru[int]
	nodes := make([]*lruNode[int], 8)
	for i := range nodes {
		nodes[i] = &lruNode[int]{v: i}
		l.touch(nodes[i])
	}
	if got, want := l.values(), []int{7, 6, 5, 4, 3, 2, 1, 0}; !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	l.touch(nodes[2])
	l.touch(nodes[2]) // already at the front
	if got, want := l.values(), []int{2, 7, 6, 5, 4, 3, 1, 0}; !slices.Equal(got, want) {
		t.Fatalf("after touch: %v, want %v", got, want)
	}
	var forgotten []int
	old := func(v int) bool { return v < 5 }
	may := func(v int) bool { return v != 1 }
	l.evict(old, may, func(v int) { forgotten = append(forgotten, v) })
	// Looks at 0 (forgotten), 1 (kept, moved to the front), 3, 4 (forgotten).
	if want := []int{0, 3, 4}; !slices.Equal(forgotten, want) {
		t.Fatalf("forgot %v, want %v", forgotten, want)
	}
	if got, want := l.values(), []int{1, 2, 7, 6, 5}; !slices.Equal(got, want) {
		t.Fatalf("after evict: %v, want %v", got, want)
	}
	forgotten = nil
	l.evict(old, may, func(v int) { forgotten = append(forgotten, v) })
	if len(forgotten) != 0 {
		t.Fatalf("evicted %v: 5 at the back is not old", forgotten)
	}
	l.remove(nodes[1])
	l.remove(nodes[5])
	if got, want := l.values(), []int{2, 7, 6}; !slices.Equal(got, want) {
		t.Fatalf("after remove: %v, want %v", got, want)
	}
}
