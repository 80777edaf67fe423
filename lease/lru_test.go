package lease

import (
	"slices"
	"testing"
)

// item is a test element of a dlist.
type item struct {
	v  int
	ln links[item]
}

func (it *item) link() *links[item] { return &it.ln }

// values lists l front to back, checking the back links agree.
func values(t *testing.T, l *dlist[item, *item]) []int {
	t.Helper()
	var out []int
	var prev *item
	for it := l.front; it != nil; it = it.ln.next {
		if it.ln.prev != prev {
			t.Fatalf("%d's prev link is wrong", it.v)
		}
		out = append(out, it.v)
		prev = it
	}
	if l.back != prev {
		t.Fatalf("back is not the last element")
	}
	return out
}

// The list keeps the most recent first; evict forgets old entries that may
// go, keeps (and moves to the front) old ones that may not, stops at the
// first recent one, and does at most evictBatch per call.
func TestLRU(t *testing.T) {
	var l lru[item, *item]
	items := make([]*item, 8)
	for i := range items {
		items[i] = &item{v: i}
		l.touch(items[i])
	}
	if got, want := values(t, &l.list), []int{7, 6, 5, 4, 3, 2, 1, 0}; !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	l.touch(items[2])
	l.touch(items[2]) // already at the front
	if got, want := values(t, &l.list), []int{2, 7, 6, 5, 4, 3, 1, 0}; !slices.Equal(got, want) {
		t.Fatalf("after touch: %v, want %v", got, want)
	}
	var forgotten []int
	old := func(it *item) bool { return it.v < 5 }
	may := func(it *item) bool { return it.v != 1 }
	l.evict(old, may, func(it *item) { forgotten = append(forgotten, it.v) })
	// Looks at 0 (forgotten), 1 (kept, moved to the front), 3, 4 (forgotten).
	if want := []int{0, 3, 4}; !slices.Equal(forgotten, want) {
		t.Fatalf("forgot %v, want %v", forgotten, want)
	}
	if got, want := values(t, &l.list), []int{1, 2, 7, 6, 5}; !slices.Equal(got, want) {
		t.Fatalf("after evict: %v, want %v", got, want)
	}
	forgotten = nil
	l.evict(old, may, func(it *item) { forgotten = append(forgotten, it.v) })
	if len(forgotten) != 0 {
		t.Fatalf("evicted %v: 5 at the back is not old", forgotten)
	}
	l.list.remove(items[1])
	l.list.remove(items[5])
	if got, want := values(t, &l.list), []int{2, 7, 6}; !slices.Equal(got, want) {
		t.Fatalf("after remove: %v, want %v", got, want)
	}
}

// insertAfter places an element after another, or at the front; contains
// knows an element only while it is in.
func TestDListInsertAfter(t *testing.T) {
	var l dlist[item, *item]
	a, b, c, d := &item{v: 1}, &item{v: 2}, &item{v: 3}, &item{v: 4}
	if l.contains(a) {
		t.Fatal("contains an element never added")
	}
	l.insertAfter(nil, a) // [1]
	l.insertAfter(a, c)   // [1 3]
	l.insertAfter(a, b)   // [1 2 3]
	l.insertAfter(nil, d) // [4 1 2 3]
	if got, want := values(t, &l), []int{4, 1, 2, 3}; !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	for _, it := range []*item{a, b, c, d} {
		if !l.contains(it) {
			t.Fatalf("does not contain %d", it.v)
		}
	}
	l.remove(d)
	l.remove(c)
	if l.contains(d) || l.contains(c) {
		t.Fatal("contains a removed element")
	}
	if got, want := values(t, &l), []int{1, 2}; !slices.Equal(got, want) {
		t.Fatalf("after remove: %v, want %v", got, want)
	}
}
