package lease_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"testing"
	"time"

	sdkinterfaces "github.com/deepgram/deepgram-go-sdk/v3/pkg/client/interfaces/v1"
	sdkmanage "github.com/deepgram/deepgram-go-sdk/v3/pkg/client/manage"

	"github.com/dglease/dglease/internal/stubkeys"
	"github.com/dglease/dglease/keys"
	"github.com/dglease/dglease/keys/keystest"
	"github.com/dglease/dglease/lease"
)

// pairBody is the body of every create below: what a lease sends (see
// Acquire's marker), comment and tags of the same length, so that the fake
// does the same work for each contender and only the client side differs.
type pairBody struct {
	Comment    string   `json:"comment"`
	Scopes     []string `json:"scopes"`
	Tags       []string `json:"tags,omitempty"`
	TTLSeconds int64    `json:"time_to_live_in_seconds,omitempty"`
}

const pairID = "0123456789abcdef"

var pairSpec = keys.Spec{
	Comment: "dglease lease=" + pairID + " mgr=" + pairID + " user=bench",
	Scopes:  []string{"usage:write"},
	Tags:    []string{"dglease", "dglease:lease=" + pairID, "dglease:mgr=" + pairID, "dglease:user=bench"},
	TTL:     15 * time.Second,
}

// floorKey is the whole create answer, as a hand-written client that uses
// the key decodes it (times left as text).
type floorKey struct {
	ID      string   `json:"api_key_id"`
	Key     string   `json:"key"`
	Comment string   `json:"comment"`
	Scopes  []string `json:"scopes"`
	Tags    []string `json:"tags"`
	Created string   `json:"created"`
	Expires string   `json:"expiration_date"`
}

// floorClient is the hand-written floor: plain net/http and encoding/json,
// the headers Deepgram needs, every status checked, no SDK and no library.
type floorClient struct {
	hc   *http.Client
	keys string // .../v1/projects/{id}/keys
	auth string
}

func (f *floorClient) send(ctx context.Context, method, u string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", f.auth)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	res, err := f.hc.Do(req)
	if err != nil {
		return err
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		return err
	}
	if res.StatusCode/100 != 2 {
		return &keys.APIError{StatusCode: res.StatusCode, Message: string(b)}
	}
	return json.Unmarshal(b, out)
}

func (f *floorClient) createDelete(b *testing.B) {
	ctx := context.Background()
	body, err := json.Marshal(pairBody{Comment: pairSpec.Comment, Scopes: pairSpec.Scopes, Tags: pairSpec.Tags, TTLSeconds: 15})
	if err != nil {
		b.Fatal(err)
	}
	var k floorKey
	if err := f.send(ctx, http.MethodPost, f.keys, body, &k); err != nil || k.ID == "" || k.Key == "" {
		b.Fatalf("floor create: %v", err)
	}
	var msg struct {
		Message string `json:"message"`
	}
	if err := f.send(ctx, http.MethodDelete, f.keys+"/"+url.PathEscape(k.ID), nil, &msg); err != nil {
		b.Fatalf("floor delete: %v", err)
	}
}

// sdkPair creates and deletes one key with the official SDK's REST client
// (APIRequest), the call a user of the raw SDK writes.
func sdkPair(b *testing.B, c *sdkmanage.Client, project string) {
	ctx := context.Background()
	body, err := json.Marshal(pairBody{Comment: pairSpec.Comment, Scopes: pairSpec.Scopes, Tags: pairSpec.Tags, TTLSeconds: 15})
	if err != nil {
		b.Fatal(err)
	}
	var k floorKey
	if err := c.APIRequest(ctx, http.MethodPost, "v1/projects/%s/keys", bytes.NewReader(body), &k, project); err != nil || k.ID == "" {
		b.Fatalf("sdk create: %v", err)
	}
	var msg struct {
		Message string `json:"message"`
	}
	if err := c.APIRequest(ctx, http.MethodDelete, "v1/projects/%s/keys/%s", nil, &msg, project, k.ID); err != nil {
		b.Fatalf("sdk delete: %v", err)
	}
}

func keysPair(b *testing.B, c *keys.Client) {
	ctx := context.Background()
	k, err := c.Create(ctx, pairSpec)
	if err != nil {
		b.Fatalf("keys create: %v", err)
	}
	if err := c.Delete(ctx, k.ID); err != nil {
		b.Fatalf("keys delete: %v", err)
	}
}

// BenchmarkCPUPerPair measures, in one run and on the same in-memory fake
// (keystest.Server.Transport), what one key created and deleted costs
// through four clients, run batch by batch in turn:
//
//   - floor: hand-written net/http and encoding/json;
//   - sdk: the official SDK's manage client, APIRequest;
//   - keys: keys.Client's Create and Delete;
//   - lease: a lease.Manager's Acquire and Release (hooks set, as a user
//     with logging or metrics has) including the deletion the Release
//     queues, with a Manager per batch whose Close waits for the deletes.
//
// The cpu figures are process CPU time (getrusage, user plus system) per
// pair, which counts the lease deleter's goroutine and the garbage
// collector wherever they run; wall figures are elapsed time. Run it on one
// core, where the two agree on what is work:
//
//	go test -run '^$' -bench CPUPerPair -cpu 1 -benchtime 20x ./lease/
//
// Ratios are to the floor. The fake's own handler runs inside every
// contender's time (it serves on the caller's goroutine), so the floor is
// not zero: it is what any client must spend.
func BenchmarkCPUPerPair(b *testing.B) {
	const batch = 200
	type contender struct {
		name      string
		cpu, wall time.Duration
		mallocs   uint64
	}
	cs := []*contender{{name: "floor"}, {name: "sdk"}, {name: "keys"}, {name: "lease"}}
	var ms runtime.MemStats
	// Each round has a fresh fake, so that the keys and requests it keeps
	// do not grow the heap (and the collector's work) from round to round,
	// and runs the contenders in a rotated order, so that none always runs
	// first or last.
	for i := -1; i < b.N; i++ { // round -1 warms up: first-call setup is not per pair
		runs, done := pairRunners(b, batch)
		for j := range cs {
			k := (i + 1 + j) % len(cs)
			if i < 0 {
				runs[k]()
				continue
			}
			c := cs[k]
			runtime.ReadMemStats(&ms)
			m0 := ms.Mallocs
			start, cpu := time.Now(), stubkeys.CPUTime()
			runs[k]()
			c.wall += time.Since(start)
			c.cpu += stubkeys.CPUTime() - cpu
			runtime.ReadMemStats(&ms)
			c.mallocs += ms.Mallocs - m0
		}
		done()
		if i < 0 {
			b.ResetTimer()
		}
	}
	b.StopTimer()
	pairs := float64(b.N * batch)
	floorCPU, floorWall := cs[0].cpu, cs[0].wall
	for _, c := range cs {
		b.ReportMetric(float64(c.cpu.Nanoseconds())/pairs, c.name+"-cpu-ns/pair")
		b.ReportMetric(float64(c.mallocs)/pairs, c.name+"-allocs/pair")
		if c != cs[0] {
			b.ReportMetric(float64(c.cpu)/float64(floorCPU), c.name+"/floor-cpu")
			b.ReportMetric(float64(c.wall)/float64(floorWall), c.name+"/floor-wall")
		}
	}
}

// pairRunners starts a fake and returns, for floor, sdk, keys and lease in
// that order, a function that creates and deletes batch keys on it, and
// the function that closes the fake.
func pairRunners(b *testing.B, batch int) (runs [4]func(), done func()) {
	srv, err := keystest.Start(keystest.WithoutListener())
	if err != nil {
		b.Fatal(err)
	}
	project := srv.ProjectID()
	floor := &floorClient{
		hc:   &http.Client{Transport: srv.Transport()},
		keys: srv.URL + "/v1/projects/" + url.PathEscape(project) + "/keys",
		auth: "token " + srv.AdminKey(),
	}
	sdk := sdkmanage.New(srv.AdminKey(), &sdkinterfaces.ClientOptions{Host: srv.URL})
	if sdk == nil {
		b.Fatal("sdk client is nil")
	}
	sdk.HTTPClient.Client.Transport = srv.Transport()
	kc := srv.Client()
	return [4]func(){
		func() {
			for range batch {
				floor.createDelete(b)
			}
		},
		func() {
			for range batch {
				sdkPair(b, sdk, project)
			}
		},
		func() {
			for range batch {
				keysPair(b, kc)
			}
		},
		func() { stubkeys.LeaseBatch(b, srv.Client(), "bench", batch, lease.WithHooks(noopHooks)) },
	}, srv.Close
}
