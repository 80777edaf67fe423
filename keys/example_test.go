package keys_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/dglease/dglease/keys"
)

// fakeDeepgram answers the two calls the example makes, in Deepgram's
// shapes, for API key "example-api-key" and project "proj-1".
func fakeDeepgram() *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/projects/proj-1/keys", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Comment string   `json:"comment"`
			Scopes  []string `json:"scopes"`
			TTL     int      `json:"time_to_live_in_seconds"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, `{"err_code":"BAD_REQUEST","err_msg":"bad JSON"}`, http.StatusBadRequest)
			return
		}
		created := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
		_ = json.NewEncoder(w).Encode(map[string]any{
			"api_key_id":      "key-1",
			"key":             "0123456789abcdef0123456789abcdef01234567",
			"comment":         req.Comment,
			"scopes":          req.Scopes,
			"created":         created.Format(time.RFC3339),
			"expiration_date": created.Add(time.Duration(req.TTL) * time.Second).Format(time.RFC3339),
		})
	})
	mux.HandleFunc("DELETE /v1/projects/proj-1/keys/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") != "key-1" {
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"err_code":"NOT_FOUND","err_msg":"API key not found"}`))
			return
		}
		_, _ = w.Write([]byte(`{"message":"Successfully deleted the API key!"}`))
	})
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "token example-api-key" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"err_code":"INVALID_AUTH","err_msg":"Invalid credentials."}`))
			return
		}
		mux.ServeHTTP(w, r)
	}))
}

func ExampleNew() {
	srv := fakeDeepgram() // stands in for https://api.deepgram.com
	defer srv.Close()

	c, err := keys.New("example-api-key", "proj-1",
		keys.WithHost(srv.URL), keys.WithHTTPClient(srv.Client()))
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	k, err := c.Create(ctx, keys.Spec{
		Comment: "stream for user 42",
		Scopes:  []string{"usage:write"},
		TTL:     30 * time.Second,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("created", k.ID, "with a", len(k.Secret), "character secret")
	fmt.Println("expires", k.Expires.Format(time.RFC3339))
	fmt.Println(k) // printing never shows the secret

	if err := c.Delete(ctx, k.ID); err != nil {
		fmt.Println(err)
		return
	}
	err = c.Delete(ctx, k.ID+"0")
	fmt.Println("deleting an unknown key is ErrNotFound:", errors.Is(err, keys.ErrNotFound))
	// Output:
	// created key-1 with a 40 character secret
	// expires 2025-01-02T03:04:35Z
	// keys.Key{ID:"key-1" Secret:"[REDACTED]" Comment:"stream for user 42" Scopes:["usage:write"] Tags:[] Created:2025-01-02T03:04:05Z Expires:2025-01-02T03:04:35Z}
	// deleting an unknown key is ErrNotFound: true
}
