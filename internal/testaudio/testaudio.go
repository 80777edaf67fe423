// Package testaudio holds a small audio clip for tests that stream to
// Deepgram or to its fakes.
package testaudio

import (
	"bytes"
	_ "embed"
	"time"
)

//go:generate go run gen.go

//go:embed testdata/hello.raw
var pcm []byte

// Format of the clip [PCM] returns, as Deepgram's query parameters spell
// it.
const (
	Encoding   = "linear16"
	SampleRate = 16000
	Channels   = 1
)

// PCM returns two seconds of raw audio (no header): encoding=linear16
// (signed 16-bit little-endian), sample_rate=16000, channels=1 — a 440 Hz
// tone, 64000 bytes. Each call returns a fresh copy.
func PCM() []byte {
	return bytes.Clone(pcm)
}

// Silence returns d of silence in the clip's format (linear16, 16 kHz,
// mono); d must be a whole number of samples.
func Silence(d time.Duration) []byte {
	return make([]byte, 2*int(d*SampleRate/time.Second))
}
