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
	res := onB.do("POST", credentialPath, nil, nil)
	require.Equal(t, http.StatusTooManyRequests, res.StatusCode, "refused by the limit the other copy spent")
	assert.Equal(t, "60", res.Header.Get("Retry-After"))

	b.visitor().credential() // another visitor has their own limit
}

// Two copies of the demo with the same release key (DEMO_RELEASE_KEY) accept
// each other's release handles: a page's release that the load balancer
// sends to the copy that did not issue its credential deletes the key there
// (lease.Manager.ReleaseForeign), and the issuing copy later finds it gone.
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
	fk, _ := fake.Key(keyID)
	assert.Equal(t, 1, fk.Deletes, "API deletes")
	assert.Equal(t, uint64(1), b.s.leases.Stats().ForeignReleases, "foreign releases on the copy that received the release")

	// The issuing copy still holds the lease; when it ends, the key is
	// found already gone, which is no error.
	assert.Equal(t, "live", onA.status(c.LeaseID).Lease)
	require.Equal(t, http.StatusNoContent, onA.release(c.Release))
	require.NoError(t, a.s.leases.Flush(t.Context()))
	assert.Equal(t, uint64(1), a.s.leases.Stats().AlreadyDeleted, "keys the issuing copy found already deleted")
	assert.Empty(t, a.s.leases.Undeleted())
}

// Without a shared release key (DEMO_RELEASE_KEY unset), each copy signs
// with its own: a release reaching the other copy is refused, says what to
// set, and deletes nothing.
func TestReplicasWithoutReleaseKeyRefuseEachOthersReleases(t *testing.T) {
	fake := keystest.NewServer(t, keystest.WithoutListener())
	a, b := newHarnessOn(t, fake), newHarnessOn(t, fake)
	onA := a.visitor()
	c := onA.credential()
	keyID := onA.keyID(c.LeaseID)

	onB := &browser{h: b, cookie: onA.cookie}
	res := onB.do("POST", releasePath, map[string]string{"release": c.Release}, nil)
	require.Equal(t, http.StatusForbidden, res.StatusCode)
	var got errorAnswer
	decode(t, res, &got)
	assert.Contains(t, got.Error, "WithReleaseKey")
	require.NoError(t, b.s.leases.Flush(t.Context()))
	assert.Equal(t, keystest.StatusActive, a.keyStatus(keyID), "nothing deleted")
}
