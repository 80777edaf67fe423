package leasehttp_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/dglease/dglease/keys/keystest"
	"github.com/dglease/dglease/lease"
	"github.com/dglease/dglease/lease/leasehttp"
)

// A backend mounts the Handler under /deepgram and names each request's
// user; a page then imports /deepgram/client.js. Here the fake Deepgram
// stands in for the real one, and two requests play the page's part.
func Example() {
	srv, err := keystest.Start(keystest.WithoutListener()) // in production: keys.New(apiKey, projectID)
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	leases, err := lease.New(srv.Client())
	if err != nil {
		panic(err)
	}
	defer leases.Close(context.Background())

	releaseKey := make([]byte, leasehttp.MinReleaseKeyLen) // in production: the same secret on every replica
	_, _ = rand.Read(releaseKey)
	h, err := leasehttp.New(leases, func(r *http.Request) (string, error) {
		c, err := r.Cookie("session") // your own sign-in
		if err != nil {
			return "", errors.New("no session")
		}
		return c.Value, nil
	}, leasehttp.WithReleaseKey(releaseKey))
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/deepgram/", http.StripPrefix("/deepgram", h))

	// The page asks for a credential...
	req := httptest.NewRequest("POST", "/deepgram/credential", nil)
	req.AddCookie(&http.Cookie{Name: "session", Value: "alice"})
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, req)
	var cred struct {
		Subprotocol []string `json:"subprotocol"`
		Release     string   `json:"release"`
	}
	_ = json.Unmarshal(w.Body.Bytes(), &cred)
	fmt.Println(w.Code, w.Header().Get("Cache-Control"), cred.Subprotocol[0])

	// ...opens its WebSocket with cred.Subprotocol, then reports it open.
	req = httptest.NewRequest("POST", "/deepgram/release", strings.NewReader(`{"release":"`+cred.Release+`"}`))
	req.AddCookie(&http.Cookie{Name: "session", Value: "alice"})
	w = httptest.NewRecorder()
	mux.ServeHTTP(w, req)
	_ = leases.Flush(context.Background()) // the key is deleted in the background
	fmt.Println(w.Code, leases.Stats().Deleted)
	// Output:
	// 200 no-store token
	// 204 1
}
