package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/keys/keystest"
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
	res := onB.do("POST", credentialPath, nil, nil)
	require.Equal(t, http.StatusTooManyRequests, res.StatusCode, "refused by the limit the other copy spent")
	assert.Equal(t, "60", res.Header.Get("Retry-After"))

	b.visitor().credential() // another visitor has their own limit
}
