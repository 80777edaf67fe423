package lease

import (
	"testing"
	"time"
)

func TestReleasedKeysForgetExpiredKeys(t *testing.T) {
	var k releasedKeys
	t0 := time.Unix(1_800_000_000, 0)
	if !k.add("a", t0.Add(time.Second), t0) || !k.add("b", t0.Add(3*time.Second), t0) {
		t.Fatal("new keys reported as seen")
	}
	if k.add("a", t0.Add(time.Second), t0) {
		t.Fatal("a repeated key reported as new")
	}
	if !k.add("c", t0.Add(4*time.Second), t0.Add(2*time.Second)) {
		t.Fatal("c reported as seen")
	}
	if _, ok := k.ids["a"]; ok || len(k.ids) != 2 || len(k.exp) != 2 {
		t.Fatalf("after a expired: ids %v, heap %v; want b and c only", k.ids, k.exp)
	}
	if !k.add("a", t0.Add(5*time.Second), t0.Add(2*time.Second)) {
		t.Fatal("a key forgotten at its expiry is new again")
	}
}
