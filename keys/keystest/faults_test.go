package keystest_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/keys"
	"github.com/dglease/dglease/keys/keystest"
)

var usageSpec = keys.Spec{Comment: "fault test", Scopes: []string{"usage:write"}, TTL: time.Minute}

func TestFail(t *testing.T) {
	tests := []struct {
		name      string
		fault     keystest.Fault
		failures  int
		status    int
		code      string
		retry     time.Duration
		sentinel  error
		temporary bool
	}{
		{"503 three times with Retry-After", keystest.Fault{Status: 503, RetryAfter: 2 * time.Second, Times: 3}, 3, 503, "SERVICE_UNAVAILABLE", 2 * time.Second, nil, true},
		{"429 once, Retry-After rounded up", keystest.Fault{Status: 429, RetryAfter: 1500 * time.Millisecond}, 1, 429, "TOO_MANY_REQUESTS", 2 * time.Second, keys.ErrRateLimited, true},
		{"custom body", keystest.Fault{Status: 500, Body: `{"err_code":"BOOM","err_msg":"custom"}`}, 1, 500, "BOOM", 0, nil, true},
		{"403", keystest.Fault{Status: 403, Times: 2}, 2, 403, "INSUFFICIENT_PERMISSIONS", 0, keys.ErrForbidden, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := memServer(t)
			c := s.Client()
			s.Fail(keystest.OpCreate, tt.fault)
			for i := range tt.failures {
				_, err := c.Create(t.Context(), usageSpec)
				var apiErr *keys.APIError
				require.ErrorAs(t, err, &apiErr, "call %d", i)
				assert.Equal(t, tt.status, apiErr.StatusCode)
				assert.Equal(t, tt.code, apiErr.Code)
				assert.Equal(t, tt.retry, apiErr.RetryAfter)
				assert.Equal(t, tt.temporary, apiErr.Temporary())
				if tt.sentinel != nil {
					assert.ErrorIs(t, err, tt.sentinel)
				}
			}
			assert.Len(t, s.Keys(), 1, "a faulted create has no effect")
			_, err := c.Create(t.Context(), usageSpec)
			require.NoError(t, err, "the fault is used up")
			assert.Len(t, s.Keys(), 2)
			_, err = c.List(t.Context())
			require.NoError(t, err, "other ops are not affected")
		})
	}
}

func TestFailForeverUntilCleared(t *testing.T) {
	s := memServer(t)
	c := s.Client()
	s.Fail(keystest.OpGrant, keystest.Fault{Status: 502, Times: -1})
	for range 5 {
		_, err := c.Grant(t.Context(), time.Minute)
		var apiErr *keys.APIError
		require.ErrorAs(t, err, &apiErr)
		assert.Equal(t, 502, apiErr.StatusCode)
	}
	s.ClearFaults(keystest.OpGrant)
	_, err := c.Grant(t.Context(), time.Minute)
	require.NoError(t, err)
}

func TestFaultsQueueInOrder(t *testing.T) {
	s := memServer(t)
	c := s.Client()
	s.Fail(keystest.OpList, keystest.Fault{Status: 500})
	s.Fail(keystest.OpList, keystest.Fault{Status: 429})
	var got []int
	for range 3 {
		_, err := c.List(t.Context())
		var apiErr *keys.APIError
		if errors.As(err, &apiErr) {
			got = append(got, apiErr.StatusCode)
		} else {
			require.NoError(t, err)
			got = append(got, 200)
		}
	}
	assert.Equal(t, []int{500, 429, 200}, got)
}

// misuseTB records the errors a server reports instead of failing the test.
type misuseTB struct {
	testing.TB
	errs []string
}

func (m *misuseTB) Helper() {}
func (m *misuseTB) Errorf(format string, a ...any) {
	m.errs = append(m.errs, fmt.Sprintf(format, a...))
}

func TestBadInjectionFailsTheTestAndDoesNothing(t *testing.T) {
	rec := &misuseTB{TB: t}
	s := keystest.NewServer(rec, keystest.WithoutListener())
	s.Fail(keystest.OpCreate, keystest.Fault{Status: 200})
	s.Fail(keystest.Op(0), keystest.Fault{Status: 500})
	s.Hang(keystest.Op(99), 1)
	require.Len(t, rec.errs, 3)
	assert.Contains(t, rec.errs[0], "status 200 is not an error status")
	assert.Contains(t, rec.errs[1], "unknown none")
	assert.Contains(t, rec.errs[2], "Hang: unknown Op(99)")
	_, err := s.Client().Create(t.Context(), keys.Spec{Scopes: []string{"usage:write"}, TTL: time.Minute})
	require.NoError(t, err, "the bad Fail injected nothing")

	// A server from Start has no test to fail: it panics, as httptest does.
	started, err := keystest.Start(keystest.WithoutListener())
	require.NoError(t, err)
	defer started.Close()
	assert.PanicsWithValue(t, "keystest: Fail: status 200 is not an error status (400..599)", func() {
		started.Fail(keystest.OpCreate, keystest.Fault{Status: 200})
	})
	assert.Equal(t, "create", keystest.OpCreate.String())
	assert.Equal(t, "Op(99)", keystest.Op(99).String())
}

func TestSetLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := memServer(t)
		c := s.Client()
		s.SetLatency(keystest.OpList, 5*time.Second)

		start := time.Now()
		_, err := c.List(t.Context())
		require.NoError(t, err)
		assert.Equal(t, 10*time.Second, time.Since(start), "List makes two calls of 5s each")

		start = time.Now()
		_, err = c.Create(t.Context(), usageSpec)
		require.NoError(t, err)
		assert.Zero(t, time.Since(start), "other ops have no latency")

		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		start = time.Now()
		_, err = c.List(ctx)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, 3*time.Second, time.Since(start), "the client's deadline ends the wait")
		reqs := s.Requests()
		assert.Equal(t, 0, reqs[len(reqs)-1].Status, "no answer was sent")

		s.ClearFaults(keystest.OpList)
		start = time.Now()
		_, err = c.List(t.Context())
		require.NoError(t, err)
		assert.Zero(t, time.Since(start))
	})
}

func TestHang(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := memServer(t)
		c := s.Client()
		k, err := c.Create(t.Context(), usageSpec)
		require.NoError(t, err)

		s.Hang(keystest.OpDelete, 1)
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		start := time.Now()
		err = c.Delete(ctx, k.ID)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, time.Minute, time.Since(start), "the call hangs until the client gives up")
		assert.Equal(t, 0, deletes(t, s, k.ID), "a hung call has no effect")

		require.NoError(t, c.Delete(t.Context(), k.ID), "only one call hangs")
		assert.Equal(t, 1, deletes(t, s, k.ID))
	})
}

func TestCloseReleasesHangs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := memServer(t)
		c := s.Client()
		s.Hang(keystest.OpList, 2)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i := range errs {
			wg.Go(func() { _, errs[i] = c.List(context.Background()) })
		}
		synctest.Wait()
		assert.Len(t, s.Requests(), 0, "both calls are hanging")

		var closers sync.WaitGroup
		for range 3 {
			closers.Go(s.Close) // concurrent, idempotent
		}
		closers.Wait()
		wg.Wait()
		for _, err := range errs {
			assert.ErrorIs(t, err, keystest.ErrClosed)
		}
		assert.Len(t, s.Requests(), 2, "Close waited for both calls")
	})
}

func TestLoseAnswer(t *testing.T) {
	s := memServer(t)
	c := s.Client()

	s.LoseAnswer(keystest.OpCreate, 1)
	_, err := c.Create(t.Context(), usageSpec)
	require.Error(t, err)
	assert.ErrorIs(t, err, syscall.ECONNRESET)
	var apiErr *keys.APIError
	assert.False(t, errors.As(err, &apiErr), "a lost answer is a transport error")
	states := s.Keys()
	require.Len(t, states, 2, "the key was created anyway")
	lost := states[1].Key
	assert.Equal(t, keystest.StatusActive, states[1].Status)
	assert.Equal(t, usageSpec.Comment, lost.Comment)

	s.LoseAnswer(keystest.OpDelete, 1)
	err = c.Delete(t.Context(), lost.ID)
	assert.ErrorIs(t, err, syscall.ECONNRESET)
	assert.Equal(t, 1, deletes(t, s, lost.ID), "the key was deleted anyway")
	assert.ErrorIs(t, c.Delete(t.Context(), lost.ID), keys.ErrNotFound, "the retry finds it gone")

	reqs := s.Requests()
	require.Len(t, reqs, 3)
	assert.Equal(t, []int{0, 0, 404}, []int{reqs[0].Status, reqs[1].Status, reqs[2].Status})
	assert.Equal(t, keystest.OpDelete, reqs[2].Op)
	assert.Equal(t, lost.ID, reqs[2].KeyID)
}

func TestLoseAnswerOverSocket(t *testing.T) {
	s := keystest.NewServer(t)
	c := socketClient(t, s, s.ProjectID())

	s.LoseAnswer(keystest.OpCreate, 1)
	_, err := c.Create(t.Context(), usageSpec)
	require.Error(t, err)
	var apiErr *keys.APIError
	assert.False(t, errors.As(err, &apiErr), "the connection was aborted: %v", err)
	assert.Len(t, s.LiveKeys(), 2, "the key was created anyway")

	k, err := c.Create(t.Context(), usageSpec)
	require.NoError(t, err)
	require.NoError(t, c.Delete(t.Context(), k.ID))
}

func TestHangOverSocketEndsWithClient(t *testing.T) {
	s := keystest.NewServer(t)
	c := socketClient(t, s, "")

	s.Hang(keystest.OpProjects, 1)
	ended := keystest.CallEnded(s)
	// A socket cannot live in a synctest bubble: the client gives up once
	// the server has the call (the hang lasts until it does).
	_, err := c.Project(cancelOnWait(t, s))
	assert.ErrorIs(t, err, context.Canceled)

	rec := nextCall(t, ended) // the handler ends with the client, the server still open
	assert.Equal(t, keystest.OpProjects, rec.Op)
	assert.Equal(t, 0, rec.Status, "no answer")
	assert.Len(t, s.Requests(), 1)
}

// socketClient returns a client of s's admin key for project ("" to
// discover it) that reaches s over its loopback socket, through
// connections of its own that are closed when the test ends.
func socketClient(t *testing.T, s *keystest.Server, project string) *keys.Client {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	c, err := keys.New(s.AdminKey(), project, keys.WithHost(s.URL), keys.WithHTTPClient(&http.Client{Transport: tr}))
	require.NoError(t, err)
	return c
}

// socketFailLimit bounds the socket tests' waits on the server. It only
// turns a failure into an error instead of a hang; no test relies on it as
// a window.
const socketFailLimit = 30 * time.Second

// cancelOnWait returns a context that is cancelled as soon as a call to s
// starts waiting on a hang or on latency, that is once the server has the
// call: a client that gives up then is seen leaving by the server.
func cancelOnWait(t *testing.T, s *keystest.Server) context.Context {
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	started := keystest.WaitStarted(s)
	go func() {
		select {
		case <-started:
		case <-ctx.Done():
		case <-time.After(socketFailLimit):
			t.Error("no call started waiting on a hang or latency")
		}
		cancel()
	}()
	return ctx
}

// nextCall returns the next call received from ended (see
// keystest.CallEnded).
func nextCall(t *testing.T, ended <-chan keystest.Request) keystest.Request {
	t.Helper()
	select {
	case r := <-ended:
		return r
	case <-time.After(socketFailLimit):
		t.Fatal("the call did not end with its client")
		return keystest.Request{}
	}
}
