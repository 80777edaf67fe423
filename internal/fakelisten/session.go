package fakelisten

import (
	"time"
)

// Session is one stream's audio, as the handler hands it to the function
// given to [WithRecorder] when the stream ends. The caller owns it.
type Session struct {
	// Account is what [Authenticate] returned for the stream's credential.
	Account string
	// RequestID is the stream's request ID, as in its dg-request-id
	// header and its messages.
	RequestID string
	// Tags are the stream's tag query parameters, in order; nil if none.
	Tags []string
	// Opened and Ended are when the stream opened and ended, on the
	// handler's clock ([WithClock]).
	Opened, Ended time.Time
	// Bytes counts the audio bytes received.
	Bytes int64
	// Audio is how much audio the stream carried. For raw audio of a
	// fixed sample size (encoding linear16, linear32, mulaw or alaw) it
	// follows from Bytes and the sample_rate and channels parameters,
	// exactly, to the nanosecond. For anything else (no encoding, i.e.
	// containerised audio such as WebM or WAV, or a compressed encoding
	// such as opus or flac), which the fake cannot decode, it is the wall
	// time from the stream's opening to the arrival of its last audio
	// frame, on time.Now's monotonic clock: a live source sends audio as
	// fast as it records it. Zero when no audio arrived.
	Audio time.Duration
}

// duration is the exact play time of n bytes of raw audio in format f.
func (f audioFormat) duration(n int64) time.Duration {
	perSecond := int64(f.bytesPerSample) * int64(f.sampleRate) * int64(f.channels)
	// formatOf bounds the factors, so the remainder times 1e9 fits.
	return time.Duration(n/perSecond)*time.Second + time.Duration(n%perSecond*int64(time.Second)/perSecond)
}
