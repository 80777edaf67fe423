package keystest

import (
	"fmt"
	"time"
)

// Op names one kind of call the fake serves, for fault injection and
// inspection. The zero Op is no call (an unknown route). A plain value.
type Op int

// The calls the fake serves.
const (
	// OpProjects is GET /v1/projects.
	OpProjects Op = iota + 1
	// OpList is GET /v1/projects/{project}/keys.
	OpList
	// OpGet is GET /v1/projects/{project}/keys/{key}.
	OpGet
	// OpCreate is POST /v1/projects/{project}/keys.
	OpCreate
	// OpDelete is DELETE /v1/projects/{project}/keys/{key}.
	OpDelete
	// OpGrant is POST /v1/auth/grant.
	OpGrant
	// OpUsage is GET /v1/projects/{project}/usage.
	OpUsage
)

var opNames = [...]string{"none", "projects", "list", "get", "create", "delete", "grant", "usage"}

// String returns the op's name, e.g. "create".
func (o Op) String() string {
	if o >= 0 && int(o) < len(opNames) {
		return opNames[o]
	}
	return fmt.Sprintf("Op(%d)", int(o))
}

func (o Op) valid() bool { return o >= OpProjects && o <= OpUsage }

// Fault is an error answer injected with [Server.Fail]. It is answered
// instead of the call, before authentication, as an overloaded front end
// would: the call has no effect. A plain value: the server keeps a copy.
type Fault struct {
	// Status is the HTTP status to answer, e.g. 429 or 503. Required:
	// 400..599.
	Status int
	// RetryAfter, when positive, is sent as a Retry-After header in whole
	// seconds (rounded up). Default: no header.
	RetryAfter time.Duration
	// Times is how many calls the fault answers. Default (0): one call.
	// Negative: every call until [Server.ClearFaults].
	Times int
	// Body is the answer body, sent as it is with Content-Type
	// application/json. Default: a JSON error in the shape the endpoint
	// uses (see the package doc), with a request_id.
	Body string
}

// opControl is what is injected for one op.
type opControl struct {
	latency time.Duration
	hangs   int
	faults  []Fault // faults[0] answers next; Times already normalised
	loses   int
}

// Fail makes the next f.Times calls of op answer f instead of being
// served. Several Fail calls queue up in order. An unknown op or a
// f.Status outside 400..599 is misuse (see [Server.AddKey]). Safe for
// concurrent use.
func (s *Server) Fail(op Op, f Fault) {
	if !s.checkOp("Fail", op) {
		return
	}
	if f.Status < 400 || f.Status > 599 {
		s.misuse("keystest: Fail: status %d is not an error status (400..599)", f.Status)
		return
	}
	if f.Times == 0 {
		f.Times = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.control(op)
	c.faults = append(c.faults, f)
}

// SetLatency makes every later call of op wait d, on the server's side,
// before it is served (d <= 0: no wait, the default). The wait uses a
// timer, so it passes by itself inside a testing/synctest bubble; a client
// that gives up (request context done) during the wait gets no answer and
// the call has no effect. Safe for concurrent use.
func (s *Server) SetLatency(op Op, d time.Duration) {
	if !s.checkOp("SetLatency", op) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.control(op).latency = max(d, 0)
}

// Hang makes the next n calls of op never be answered: each waits until
// the client gives up (its request context is done) or the server is
// closed, and then ends without an answer and without effect. Safe for
// concurrent use.
func (s *Server) Hang(op Op, n int) {
	if !s.checkOp("Hang", op) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.control(op).hangs += max(n, 0)
}

// LoseAnswer makes the next n calls of op take effect (a create creates
// its key, a delete deletes) but lose their answer: the connection is
// reset. Through [Server.Transport] the client gets an error from
// RoundTrip; over the socket the handler aborts (http.ErrAbortHandler).
// Only calls that succeed are counted: a call answered with an error
// answers normally. Safe for concurrent use.
func (s *Server) LoseAnswer(op Op, n int) {
	if !s.checkOp("LoseAnswer", op) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.control(op).loses += max(n, 0)
}

// ClearFaults removes everything injected for op: pending faults, hangs,
// lost answers and latency. Hangs already waiting keep waiting. Safe for
// concurrent use.
func (s *Server) ClearFaults(op Op) {
	if !s.checkOp("ClearFaults", op) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.controls, op)
}

// checkOp reports whether op is one the fake serves, reporting misuse if not.
func (s *Server) checkOp(method string, op Op) bool {
	if !op.valid() {
		s.misuse("keystest: %s: unknown %v", method, op)
		return false
	}
	return true
}

// misuse reports bad input to a control method: on a server from
// [NewServer] it fails the test (t.Errorf) and the call does nothing; on a
// server from [Start], which has no test to fail, it panics, as
// net/http/httptest does on misuse.
func (s *Server) misuse(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if s.t != nil {
		s.t.Helper()
		s.t.Errorf("%s", msg)
		return
	}
	panic(msg)
}

// control returns op's controls, creating them. s.mu must be held.
func (s *Server) control(op Op) *opControl {
	c := s.controls[op]
	if c == nil {
		c = &opControl{}
		s.controls[op] = c
	}
	return c
}

// injected is what happens to one call, decided when it arrives.
type injected struct {
	latency time.Duration
	hang    bool
	fault   *Fault
}

// takeInjected consumes the injections for one call of op. s.mu must be
// held.
func (s *Server) takeInjected(op Op) injected {
	c := s.controls[op]
	if c == nil {
		return injected{}
	}
	in := injected{latency: c.latency}
	if c.hangs > 0 {
		c.hangs--
		in.hang = true
		return in
	}
	if len(c.faults) > 0 {
		f := c.faults[0]
		in.fault = &f
		if f.Times > 0 {
			c.faults[0].Times--
			if c.faults[0].Times == 0 {
				c.faults = c.faults[1:]
			}
		}
	}
	return in
}

// takeLose reports whether a successful call of op loses its answer, and
// consumes it. s.mu must be held.
func (s *Server) takeLose(op Op) bool {
	c := s.controls[op]
	if c == nil || c.loses == 0 {
		return false
	}
	c.loses--
	return true
}
