package leasehttp_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/dglease/dglease/keys/keystest"
	"github.com/dglease/dglease/lease"
	"github.com/dglease/dglease/lease/leasehttp"
)

func releaseKey() []byte {
	k := make([]byte, leasehttp.MinReleaseKeyLen)
	_, _ = rand.Read(k)
	return k
}

// events records the hooks' errors and already-deleted keys of replicas.
type events struct {
	mu     sync.Mutex
	errs   []lease.Event
	gone   []string
	delete map[string]int // successful deletes by key ID
}

func (e *events) hooks() lease.Hooks {
	return lease.Hooks{
		OnError: func(ev lease.Event) { e.mu.Lock(); e.errs = append(e.errs, ev); e.mu.Unlock() },
		OnDelete: func(ev lease.Event) {
			e.mu.Lock()
			defer e.mu.Unlock()
			if ev.AlreadyDeleted {
				e.gone = append(e.gone, ev.KeyID)
			} else {
				if e.delete == nil {
					e.delete = map[string]int{}
				}
				e.delete[ev.KeyID]++
			}
		},
	}
}

// sharedKeyPair is two replicas, built with mopts, on one fake, sharing a
// release key.
func sharedKeyPair(t *testing.T, mopts []lease.Option) (srv *keystest.Server, r1, r2 *replica) {
	srv = fake(t)
	key := releaseKey()
	return srv, newReplica(t, srv, mopts, leasehttp.WithReleaseKey(key)), newReplica(t, srv, mopts, leasehttp.WithReleaseKey(key))
}

func TestReleaseThroughAnotherReplicaDeletesAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ev := &events{}
		srv, r1, r2 := sharedKeyPair(t, []lease.Option{lease.WithHooks(ev.hooks())})

		c := getCredential(t, r1.h, "alice")
		w := serve(r2.h, http.MethodPost, "/release", "alice", releaseBody(c.Release))
		require.Equal(t, http.StatusNoContent, w.Code, w.Body.String())
		require.NoError(t, r2.m.Flush(context.Background()))
		k := keyOf(t, srv, c)
		assert.Equal(t, keystest.StatusDeleted, k.Status, "deleted at once, not at the TTL")
		_, live := r1.m.Owner(c.LeaseID)
		assert.True(t, live, "replica 1 still holds the lease")

		// Another user cannot replay it on replica 2 either.
		w = serve(r2.h, http.MethodPost, "/release", "bob", releaseBody(c.Release))
		assert.Equal(t, http.StatusForbidden, w.Code)

		time.Sleep(lease.DefaultTTL) // replica 1's lease ends by its TTL
		synctest.Wait()              // its timer has run
		require.NoError(t, r1.m.Flush(context.Background()))
		_, live = r1.m.Owner(c.LeaseID)
		assert.False(t, live)
		s1, s2 := r1.m.Stats(), r2.m.Stats()
		assert.Equal(t, uint64(1), s1.AlreadyDeleted)
		assert.Zero(t, s1.Deleted)
		assert.Equal(t, uint64(1), s2.Deleted)
		assert.Equal(t, uint64(1), s2.ForeignReleases)
		assert.Equal(t, 1, keyOf(t, srv, c).Deletes)
		ev.mu.Lock()
		defer ev.mu.Unlock()
		assert.Empty(t, ev.errs, "no error reported")
		assert.Equal(t, []string{k.Key.ID}, ev.gone)
	})
}

func TestReleaseOnAnotherReplicaWithoutSharedKeyIsRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := fake(t)
		r1 := newReplica(t, srv, nil)
		r2 := newReplica(t, srv, nil)
		c := getCredential(t, r1.h, "alice")
		w := serve(r2.h, http.MethodPost, "/release", "alice", releaseBody(c.Release))
		require.Equal(t, http.StatusForbidden, w.Code)
		assert.Contains(t, errorBody(t, w)["error"], "set the same leasehttp.WithReleaseKey on every replica")
		require.NoError(t, r2.m.Flush(context.Background()))
		assert.Equal(t, keystest.StatusActive, keyOf(t, srv, c).Status, "nothing deleted")
	})
}

// roundRobin is a load balancer: each request goes to the next replica,
// and the answer says which one served it.
type roundRobin struct {
	next     atomic.Uint64
	replicas []*replica
}

func (lb *roundRobin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	i := (lb.next.Add(1) - 1) % uint64(len(lb.replicas))
	w.Header().Set("X-Replica", string(rune('0'+i)))
	http.StripPrefix("/dg", lb.replicas[i].h).ServeHTTP(w, r)
}

func TestThousandHandOffsAcrossThreeReplicas(t *testing.T) {
	const n = 1000
	srv := fake(t)
	key := releaseKey()
	ev := &events{}
	lb := &roundRobin{}
	for range 3 {
		// A lease released through another replica stays live on its
		// issuer until its TTL, counting in the issuer's caps.
		opts := []lease.Option{lease.WithHooks(ev.hooks()), lease.WithTTL(time.Minute), lease.WithMaxLeases(n, n)}
		lb.replicas = append(lb.replicas, newReplica(t, srv, opts, leasehttp.WithReleaseKey(key)))
	}
	front := httptest.NewServer(lb)
	defer front.Close()

	post := func(path, user, body string) (*http.Response, []byte) {
		req, err := http.NewRequest(http.MethodPost, front.URL+"/dg"+path, strings.NewReader(body))
		if err != nil {
			return nil, nil
		}
		req.Header.Set(userHeader, user)
		res, err := front.Client().Do(req)
		if err != nil {
			t.Error(err)
			return nil, nil
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, b
	}

	var foreign atomic.Int64
	var g errgroup.Group
	g.SetLimit(16)
	for i := range n {
		g.Go(func() error {
			user := "user-" + string(rune('a'+i%26))
			res, body := post("/credential", user, "")
			if res == nil || !assert.Equal(t, http.StatusOK, res.StatusCode, string(body)) {
				return nil
			}
			var c credential
			if !assert.NoError(t, json.Unmarshal(body, &c)) {
				return nil
			}
			issuer := res.Header.Get("X-Replica")
			res, body = post("/release", user, releaseBody(c.Release))
			if res == nil || !assert.Equal(t, http.StatusNoContent, res.StatusCode, string(body)) {
				return nil
			}
			if res.Header.Get("X-Replica") != issuer {
				foreign.Add(1)
			}
			return nil
		})
	}
	require.NoError(t, g.Wait())
	t.Logf("%d of %d releases reached a replica other than the issuer", foreign.Load(), n)
	require.Positive(t, foreign.Load())

	for _, r := range lb.replicas {
		require.NoError(t, r.m.Flush(context.Background()))
	}
	created := srv.Keys()[1:] // the admin key first
	require.Len(t, created, n)
	for _, k := range created {
		assert.Equal(t, keystest.StatusDeleted, k.Status, k.Key.ID)
		assert.Equal(t, 1, k.Deletes, "deleted exactly once: %s", k.Key.ID)
	}
	var live int
	for _, r := range lb.replicas {
		live += r.m.Stats().Live
	}
	assert.Equal(t, int(foreign.Load()), live, "leases released elsewhere are still held by their issuer")

	for _, r := range lb.replicas {
		require.NoError(t, r.m.Close(context.Background()), "no error reported for keys found already deleted")
	}
	var sum lease.Stats
	for _, r := range lb.replicas {
		s := r.m.Stats()
		sum.Acquired += s.Acquired
		sum.Released += s.Released
		sum.Deleted += s.Deleted
		sum.AlreadyDeleted += s.AlreadyDeleted
		sum.ForeignReleases += s.ForeignReleases
		sum.DeleteFailed += s.DeleteFailed
		sum.Leaked += s.Leaked
	}
	assert.Equal(t, uint64(n), sum.Acquired)
	assert.Equal(t, uint64(n), sum.Released)
	assert.Equal(t, uint64(n), sum.Deleted, "every key deleted once, across replicas")
	assert.Equal(t, uint64(foreign.Load()), sum.ForeignReleases)
	assert.Equal(t, uint64(foreign.Load()), sum.AlreadyDeleted, "each foreign release found gone by its issuer")
	assert.Zero(t, sum.DeleteFailed)
	assert.Zero(t, sum.Leaked)
	ev.mu.Lock()
	defer ev.mu.Unlock()
	assert.Empty(t, ev.errs)
	assert.Len(t, ev.delete, n)
	assert.Len(t, ev.gone, int(foreign.Load()))
}
