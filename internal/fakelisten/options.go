package fakelisten

import (
	"errors"
	"strings"
	"time"
)

// DefaultIdleTimeout is how long a stream may go without a message from
// the client before the fake closes it with code 1011, as Deepgram does
// after about ten seconds without audio or a KeepAlive.
const DefaultIdleTimeout = 10 * time.Second

// defaultTranscript is the phrase list a stream's Results take their
// transcripts from unless [WithTranscript] says otherwise.
var defaultTranscript = []string{
	"hello from the fake deepgram",
	"the quick brown fox jumps over the lazy dog",
	"testing one two three",
}

// Option configures a [Handler]. Options are sealed: only this package
// defines them.
type Option interface{ apply(*config) error }

type optionFunc func(*config) error

func (f optionFunc) apply(c *config) error { return f(c) }

type config struct {
	idleTimeout time.Duration
	transcript  []string
	shutdown    <-chan struct{}
	record      func(Session)
	now         func() time.Time
}

func defaultConfig() config {
	return config{
		idleTimeout: DefaultIdleTimeout,
		transcript:  defaultTranscript,
		now:         time.Now,
	}
}

// WithIdleTimeout sets how long a stream may stay silent (no audio frame
// and no text message from the client) before the fake closes it with
// code 1011. Default: [DefaultIdleTimeout]. d must be positive.
func WithIdleTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) error {
		if d <= 0 {
			return errors.New("fakelisten: idle timeout must be positive")
		}
		c.idleTimeout = d
		return nil
	})
}

// WithTranscript sets the phrases Results messages carry: the n-th Results
// message of every stream (counting from 0) has the transcript
// phrases[n % len(phrases)]. Each phrase must hold at least one word.
// Default: "hello from the fake deepgram", "the quick brown fox jumps over
// the lazy dog", "testing one two three".
func WithTranscript(phrases ...string) Option {
	cp := make([]string, 0, len(phrases))
	for _, p := range phrases {
		cp = append(cp, strings.Join(strings.Fields(p), " "))
	}
	return optionFunc(func(c *config) error {
		if len(cp) == 0 {
			return errors.New("fakelisten: WithTranscript needs at least one phrase")
		}
		for _, p := range cp {
			if p == "" {
				return errors.New("fakelisten: WithTranscript phrases must not be blank")
			}
		}
		c.transcript = cp
		return nil
	})
}

// WithShutdown makes every open stream close (code 1001, going away) once
// done is closed, as a server shutting down would. Default: streams end only
// when the client closes them or they go idle.
func WithShutdown(done <-chan struct{}) Option {
	return optionFunc(func(c *config) error {
		if done == nil {
			return errors.New("fakelisten: WithShutdown needs a non-nil channel")
		}
		c.shutdown = done
		return nil
	})
}

// WithRecorder makes the handler call record once for every stream, with
// the stream's [Session], when the stream ends: on CloseStream, before the
// Metadata message is sent (so a client that has read it can rely on the
// record), or else when the connection ends (client gone, idle timeout,
// bad message, shutdown). record runs on the stream's goroutine and must
// be safe for concurrent use. Default: nothing is recorded.
func WithRecorder(record func(Session)) Option {
	return optionFunc(func(c *config) error {
		if record == nil {
			return errors.New("fakelisten: WithRecorder needs a non-nil function")
		}
		c.record = record
		return nil
	})
}

// WithClock makes the handler read the time from now for the times it
// reports: a Session's Opened and Ended, and the Metadata message's
// created. Durations (idle timeout, wall-time audio) are measured with
// time.Now's monotonic clock whatever the option. Default: time.Now.
func WithClock(now func() time.Time) Option {
	return optionFunc(func(c *config) error {
		if now == nil {
			return errors.New("fakelisten: WithClock needs a non-nil function")
		}
		c.now = now
		return nil
	})
}
