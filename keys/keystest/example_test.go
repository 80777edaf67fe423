package keystest_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dglease/dglease/keys"
	"github.com/dglease/dglease/keys/keystest"
)

func ExampleNewServer() {
	// In a test: s := keystest.NewServer(t), closed by t.Cleanup.
	s, err := keystest.Start(keystest.WithoutListener())
	if err != nil {
		panic(err)
	}
	defer s.Close()
	ctx := context.Background()
	c := s.Client() // a *keys.Client with the admin key, in memory

	k, err := c.Create(ctx, keys.Spec{Comment: "user 42", Scopes: []string{"usage:write"}, TTL: time.Minute})
	if err != nil {
		panic(err)
	}
	fmt.Println("secret is 40 hex characters:", len(k.Secret) == 40)

	_, err = c.Create(ctx, keys.Spec{Scopes: []string{"admin"}, TTL: time.Minute})
	fmt.Println("minting admin is forbidden:", errors.Is(err, keys.ErrForbidden))

	s.Fail(keystest.OpDelete, keystest.Fault{Status: 503, RetryAfter: 2 * time.Second})
	err = c.Delete(ctx, k.ID)
	var apiErr *keys.APIError
	if errors.As(err, &apiErr) {
		fmt.Println("first delete:", apiErr.StatusCode, "retry after", apiErr.RetryAfter)
	}
	fmt.Println("second delete:", c.Delete(ctx, k.ID))
	st, _ := s.Key(k.ID)
	fmt.Println("deleted once:", st.Deletes == 1)
	fmt.Println("live keys:", len(s.LiveKeys())) // the admin key
	// Output:
	// secret is 40 hex characters: true
	// minting admin is forbidden: true
	// first delete: 503 retry after 2s
	// second delete: <nil>
	// deleted once: true
	// live keys: 1
}
