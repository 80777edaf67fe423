package keystest

// ErrClosed is what RoundTrip returns once the server is closed.
var ErrClosed = errClosed

// WaitStarted makes s send, on the returned channel, the op of each call
// that is about to wait on a hang or on latency ([Server.Hang],
// [Server.SetLatency]), so that a test can give up only once the server
// has the call. Call it before the calls; the channel holds 16 signals, and
// a call beyond that blocks until the test receives.
func WaitStarted(s *Server) <-chan Op {
	ch := make(chan Op, 16)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.waitStarted = ch
	return ch
}

// CallEnded makes s send, on the returned channel, each call as it is
// recorded for [Server.Requests], that is once its handler is done with it,
// so that a test can see a call end while the server is open. Call it
// before the calls; the channel holds 16 calls, and a call beyond that
// blocks until the test receives.
func CallEnded(s *Server) <-chan Request {
	ch := make(chan Request, 16)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.callEnded = ch
	return ch
}
