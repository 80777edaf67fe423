package main

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/keys/keystest"
	"github.com/dglease/dglease/lease/leasehttp"
	"github.com/dglease/dglease/lease/leaseredis"
)

// Two copies of the demo with one Redis (-redis) share each visitor's
// limits: a visitor who spent their credential on one copy is refused on
// the other with 429 and Retry-After, as the same copy would.
func TestReplicasShareLimitsThroughRedis(t *testing.T) {
	mr := miniredis.RunT(t)
	fake := keystest.NewServer(t, keystest.WithoutListener())
	replica := func() *harness {
		rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
		t.Cleanup(func() { _ = rdb.Close() })
		return newHarnessOn(t, fake, func(c *config) {
			c.Limiter = leaseredis.New(rdb, leaseredis.WithPrefix("dglease-demo"))
			c.RateEvery, c.Burst = time.Minute, 1
		})
	}
	a, b := replica(), replica()
	onA := a.visitor()
	onA.credential()

	onB := &browser{h: b, cookie: onA.cookie} // the same visitor, sent to the other copy
	res := onB.do("POST", credentialPath, nil)
	require.Equal(t, http.StatusTooManyRequests, res.StatusCode, "refused by the limit the other copy spent")
	assert.Equal(t, "60", res.Header.Get("Retry-After"))

	b.visitor().credential() // another visitor has their own limit
}

// Two copies of the demo with the same release key (DEMO_RELEASE_KEY,
// config.ReleaseKey) accept each other's release handles: a page's release
// that the load balancer sends to the copy that did not issue its
// credential deletes the key there. (leasehttp's own tests cover foreign
// releases, and their refusal without a shared key; this checks only that
// the demo hands its key to leasehttp.WithReleaseKey.)
func TestReplicasShareReleaseKey(t *testing.T) {
	key := make([]byte, leasehttp.MinReleaseKeyLen)
	_, _ = rand.Read(key)
	fake := keystest.NewServer(t, keystest.WithoutListener())
	replica := func() *harness {
		h := newHarnessOn(t, fake, func(c *config) { c.ReleaseKey = key })
		h.sawSecret(hex.EncodeToString(key))
		return h
	}
	a, b := replica(), replica()
	onA := a.visitor()
	c := onA.credential()
	keyID := onA.keyID(c.LeaseID)

	onB := &browser{h: b, cookie: onA.cookie} // the same visitor, sent to the other copy
	require.Equal(t, http.StatusNoContent, onB.release(c.Release), "released through the copy that did not issue it")
	require.NoError(t, b.s.leases.Flush(t.Context()))
	assert.Equal(t, keystest.StatusDeleted, a.keyStatus(keyID))
}
