package keys_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jarcoal/httpmock"
	"github.com/stretchr/testify/assert"

	"github.com/dglease/dglease/keys"
)

func TestConcurrentCreateAndDelete(t *testing.T) {
	const workers = 50
	c, mock := newClient(t, "") // discovery races too

	var discoveries atomic.Int32
	mock.RegisterResponder(http.MethodGet, projectsURL, func(*http.Request) (*http.Response, error) {
		discoveries.Add(1)
		return httpmock.NewStringResponse(200, `{"projects":[{"project_id":"`+testProject+`","name":"Main"}]}`), nil
	})

	var (
		mu      sync.Mutex
		live    = map[string]string{} // id -> comment
		deleted = map[string]bool{}
		next    atomic.Int64
	)
	mock.RegisterResponder(http.MethodPost, keysURL, func(req *http.Request) (*http.Response, error) {
		var body struct {
			Comment string `json:"comment"`
		}
		if err := json.NewDecoder(req.Body).Decode(&body); err != nil {
			return httpmock.NewStringResponse(400, err.Error()), nil
		}
		id := fmt.Sprintf("key-%d", next.Add(1))
		mu.Lock()
		live[id] = body.Comment
		mu.Unlock()
		b, _ := json.Marshal(map[string]any{
			"api_key_id": id, "key": fmt.Sprintf("%040d", next.Load()), "comment": body.Comment,
			"scopes": []string{"usage:write"}, "created": createdJSON,
		})
		return httpmock.NewBytesResponse(200, b), nil
	})
	mock.RegisterResponder(http.MethodDelete, `=~^`+keysURL+`/key-\d+$`, func(req *http.Request) (*http.Response, error) {
		id := req.URL.Path[strings.LastIndex(req.URL.Path, "/")+1:]
		mu.Lock()
		defer mu.Unlock()
		if _, ok := live[id]; !ok || deleted[id] {
			return httpmock.NewStringResponse(404, `{"err_code":"NOT_FOUND","err_msg":"no such key"}`), nil
		}
		deleted[id] = true
		return httpmock.NewStringResponse(200, `{"message":"ok"}`), nil
	})

	var wg sync.WaitGroup
	errs := make(chan error, workers)
	ids := make(chan string, workers)
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			comment := fmt.Sprintf("worker %d", i)
			_ = fmt.Sprint(c) // printing races with discovery
			k, err := c.Create(context.Background(), keys.Spec{Comment: comment, Scopes: []string{"usage:write"}, TTL: time.Minute})
			if err != nil {
				errs <- err
				return
			}
			if k.Comment != comment {
				errs <- fmt.Errorf("worker %d got key %s for comment %q", i, k.ID, k.Comment)
				return
			}
			ids <- k.ID
			if err := c.Delete(context.Background(), k.ID); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	close(ids)
	for err := range errs {
		assert.NoError(t, err)
	}

	seen := map[string]bool{}
	for id := range ids {
		assert.False(t, seen[id], "key %s handed to two workers", id)
		seen[id] = true
	}
	assert.Len(t, seen, workers)
	assert.Equal(t, int32(1), discoveries.Load(), "the project is discovered once")
	mu.Lock()
	defer mu.Unlock()
	assert.Len(t, live, workers)
	assert.Len(t, deleted, workers)
	assert.Equal(t, 1+2*workers, mock.GetTotalCallCount())
}

func TestConcurrentMixedCalls(t *testing.T) {
	const workers = 50
	c, mock := newClient(t, testProject)
	mock.RegisterResponder(http.MethodPost, keysURL, jsonResponder(200, createAnswer("key-1")))
	mock.RegisterResponder(http.MethodGet, keysURL, jsonResponder(200, activeAnswer))
	mock.RegisterResponder(http.MethodPost, grantURL, jsonResponder(200, `{"access_token":"`+testJWT+`","expires_in":30}`))
	mock.RegisterResponder(http.MethodDelete, keysURL+"/key-1", jsonResponder(404, `{"err_code":"NOT_FOUND","err_msg":"gone"}`))

	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			var err error
			switch i % 4 {
			case 0:
				_, err = c.Create(ctx, validSpec)
			case 1:
				_, err = c.List(ctx)
			case 2:
				_, err = c.Grant(ctx, 30*time.Second)
			case 3:
				if err = c.Delete(ctx, "key-1"); errors.Is(err, keys.ErrNotFound) {
					err = nil
				}
			}
			if err != nil {
				t.Errorf("worker %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	// 13 creates, 13 lists (two calls each), 12 grants, 12 deletes.
	assert.Equal(t, 13+26+12+12, mock.GetTotalCallCount())
}
