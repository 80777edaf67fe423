// Command stream shows server-side streaming with a leased key: it leases
// a short-lived key, opens Deepgram's live WebSocket with it through the
// official Go SDK, releases the lease as soon as the socket is open (the
// key is deleted; the stream goes on, since Deepgram checks a key when the
// socket opens), streams audio in 100 ms chunks, prints the transcripts as
// they arrive, and closes the stream with CloseStream.
//
//	go run ./examples/stream
//	go run ./examples/stream -audio speech.raw   # linear16, 16 kHz, mono, no header
//
// Without DEEPGRAM_API_KEY it runs against the embedded fake Deepgram
// (keys/keystest, on a loopback port), which answers each chunk with a
// fixed phrase, and says so on its first line. With DEEPGRAM_API_KEY set
// (a key with keys:write; DEEPGRAM_PROJECT_ID is optional when the key
// sees one project) it uses the real Deepgram (model nova-3) and paces the
// audio at real time. The bundled clip is a two-second tone: the real
// Deepgram hears no words in it; pass -audio for speech. It never prints
// a secret.
//
// The SDK reads DEEPGRAM_* variables from the process environment and
// lets some of them override what it is given (DEEPGRAM_HOST the host,
// DEEPGRAM_ACCESS_TOKEN the key); the program refuses to run while those
// are set, rather than stream to another host or with another credential.
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"

	msginterfaces "github.com/deepgram/deepgram-go-sdk/v3/pkg/api/listen/v1/websocket/interfaces"
	"github.com/deepgram/deepgram-go-sdk/v3/pkg/client/interfaces"
	"github.com/deepgram/deepgram-go-sdk/v3/pkg/client/listen"

	"github.com/dglease/dglease/keys"
	"github.com/dglease/dglease/keys/keystest"
	"github.com/dglease/dglease/lease"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "stream:", err)
		os.Exit(1)
	}
}

// The audio format, as Deepgram's query parameters spell it: linear16
// (signed 16-bit little-endian samples, no header), 16 kHz, mono.
const (
	encoding   = "linear16"
	sampleRate = 16000
	channels   = 1
)

// Audio is sent in chunks of chunkDuration.
const (
	chunkDuration = 100 * time.Millisecond
	chunkBytes    = sampleRate * channels * 2 / 10 // linear16: 2 bytes a sample
)

// tone returns the default clip, two seconds of a 440 Hz tone in the
// format above: the fake transcribes any audio; the real Deepgram hears
// no words in it.
func tone() []byte {
	const n = 2 * sampleRate * channels
	pcm := make([]byte, 0, 2*n)
	for i := range n {
		v := 0.3 * math.MaxInt16 * math.Sin(2*math.Pi*440*float64(i)/sampleRate)
		pcm = binary.LittleEndian.AppendUint16(pcm, uint16(int16(v)))
	}
	return pcm
}

// closeTimeout bounds the wait for Deepgram's last results after
// CloseStream.
const closeTimeout = 10 * time.Second

// run is the program; env is os.Getenv outside tests.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, env func(string) string) error {
	fs := flag.NewFlagSet("stream", flag.ContinueOnError)
	fs.SetOutput(stderr)
	audioFile := fs.String("audio", "", "raw linear16 16 kHz mono audio to stream (default: the bundled 2 s tone)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := checkSDKEnv(); err != nil {
		return err
	}
	audio := tone()
	if *audioFile != "" {
		var err error
		if audio, err = os.ReadFile(*audioFile); err != nil {
			return err
		}
	}

	out := &printer{w: stdout}
	var client *keys.Client
	var fake *keystest.Server
	var host string // the SDK's default (wss://api.deepgram.com) unless set
	pace := false
	if apiKey := env("DEEPGRAM_API_KEY"); apiKey != "" {
		c, err := keys.New(apiKey, env("DEEPGRAM_PROJECT_ID"))
		if err != nil {
			return err
		}
		client, pace = c, true // real time: Deepgram expects audio no faster than it plays
		out.println("Using the real Deepgram (DEEPGRAM_API_KEY is set).")
	} else {
		srv, err := keystest.Start() // listens: the SDK dials a real socket
		if err != nil {
			return err
		}
		defer srv.Close()
		fake, client = srv, srv.Client()
		// The SDK's live client takes the scheme from Host only if it is
		// ws:// or wss://.
		host = strings.TrimSuffix(srv.ListenURL(), "/v1/listen")
		out.println("DEEPGRAM_API_KEY is not set: using the embedded fake Deepgram at " + srv.URL + ".")
	}

	leases, err := lease.New(client)
	if err != nil {
		return err
	}
	res, streamErr := stream(ctx, leases, host, audio, pace, out)
	// Close waits until the key is deleted.
	if err := leases.Close(context.WithoutCancel(ctx)); err != nil {
		return errors.Join(streamErr, err)
	}
	if streamErr != nil {
		return streamErr
	}
	when := "after the stream closed"
	if res.releasedOpen {
		when = "while the stream was still open"
	}
	if fake == nil {
		out.printf("Key %s is deleted; its lease ended %s.\n", res.keyID, when)
		return nil
	}
	k, ok := fake.Key(res.keyID)
	switch {
	case !ok:
		return fmt.Errorf("key %s is unknown to the fake", res.keyID)
	case k.Status != keystest.StatusDeleted:
		return fmt.Errorf("key %s is %s on the fake, not deleted", res.keyID, k.Status)
	}
	out.printf("Key %s is deleted on the fake; its lease ended %s.\n", res.keyID, when)
	return nil
}

// streamed is what stream reports.
type streamed struct {
	keyID string
	// releasedOpen: the lease had ended before CloseStream was sent.
	releasedOpen bool
}

// stream leases a key and streams audio with it.
func stream(ctx context.Context, leases *lease.Manager, host string, audio []byte, pace bool, out *printer) (res streamed, err error) {
	l, err := leases.Acquire(ctx, "user-42")
	if err != nil {
		return res, err
	}
	res.keyID = l.KeyID()
	defer l.Release() // however this ends, the key is deleted
	out.printf("Leased key %s for %s (lease ends in %s).\n", l.KeyID(), l.User(), time.Until(l.Expires()).Round(time.Second))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cb := newCallback(out)
	ws, err := listen.NewWSUsingCallback(ctx, "",
		&interfaces.ClientOptions{APIKey: l.Secret(), Host: host},
		&interfaces.LiveTranscriptionOptions{
			Model:      "nova-3",
			Encoding:   encoding,
			SampleRate: sampleRate,
			Channels:   channels,
		}, cb)
	if err != nil {
		return res, err
	}
	if ws == nil {
		return res, errors.New("the SDK refused the transcription options")
	}
	if !ws.ConnectWithCancel(ctx, cancel, 1) {
		return res, errors.New("could not open the WebSocket (refused, or unreachable)")
	}
	defer ws.Stop()

	// The socket is open: Deepgram has checked the key, and the stream
	// outlives it. Delete it now rather than at the end of its TTL.
	l.Release()
	out.println("WebSocket open; lease released: its key is being deleted while the stream goes on.")

	var tick <-chan time.Time
	if pace {
		t := time.NewTicker(chunkDuration)
		defer t.Stop()
		tick = t.C
	}
	for off := 0; off < len(audio); off += chunkBytes {
		if _, err := ws.Write(audio[off:min(off+chunkBytes, len(audio))]); err != nil {
			return res, fmt.Errorf("sending audio: %w", err)
		}
		if tick != nil {
			select {
			case <-tick:
			case <-ctx.Done():
				return res, ctx.Err()
			}
		}
	}
	// Whether the lease had ended (its key handed to the deleter) while
	// the stream was still open.
	select {
	case <-l.Done():
		res.releasedOpen = true
	default:
	}
	out.printf("Sent %.1fs of audio; sending CloseStream.\n", float64(len(audio))/float64(2*sampleRate*channels))

	// CloseStream asks Deepgram to finish: it sends the last results and a
	// Metadata message, then closes the socket.
	if err := ws.WriteJSON(map[string]string{"type": "CloseStream"}); err != nil {
		return res, fmt.Errorf("sending CloseStream: %w", err)
	}
	timer := time.NewTimer(closeTimeout)
	defer timer.Stop()
	select {
	case <-cb.closed:
	case <-timer.C:
		return res, fmt.Errorf("deepgram did not close the stream within %s of CloseStream", closeTimeout)
	case <-ctx.Done():
		return res, ctx.Err()
	}
	n, words := cb.counts()
	out.printf("Stream closed: %d results, %d of them with words.\n", n, words)
	if err := cb.failure(); err != nil {
		return res, err
	}
	return res, nil
}

// callback receives the SDK's messages on the SDK's goroutine and prints
// transcripts.
type callback struct {
	out       *printer
	closed    chan struct{} // closed on the first Close message
	closeOnce sync.Once

	mu      sync.Mutex
	results int
	words   int
	err     error
}

func newCallback(out *printer) *callback {
	return &callback{out: out, closed: make(chan struct{})}
}

func (c *callback) Open(*msginterfaces.OpenResponse) error { return nil }

func (c *callback) Message(m *msginterfaces.MessageResponse) error {
	text := ""
	if len(m.Channel.Alternatives) > 0 {
		text = m.Channel.Alternatives[0].Transcript
	}
	c.mu.Lock()
	c.results++
	if text != "" {
		c.words++
	}
	c.mu.Unlock()
	if text != "" {
		kind := "interim"
		if m.IsFinal {
			kind = "final"
		}
		c.out.printf("  [%5.2fs] %-7s %s\n", m.Start, kind, text)
	}
	return nil
}

func (c *callback) Metadata(m *msginterfaces.MetadataResponse) error {
	c.out.printf("Metadata: request %s, %.1fs of audio transcribed.\n", m.RequestID, m.Duration)
	return nil
}

func (c *callback) SpeechStarted(*msginterfaces.SpeechStartedResponse) error { return nil }
func (c *callback) UtteranceEnd(*msginterfaces.UtteranceEndResponse) error   { return nil }
func (c *callback) UnhandledEvent([]byte) error                              { return nil }

func (c *callback) Close(*msginterfaces.CloseResponse) error {
	c.closeOnce.Do(func() { close(c.closed) })
	return nil
}

func (c *callback) Error(e *msginterfaces.ErrorResponse) error {
	c.mu.Lock()
	if c.err == nil {
		c.err = fmt.Errorf("deepgram: %s %s: %s", e.ErrCode, e.ErrMsg, e.Description)
	}
	c.mu.Unlock()
	return nil
}

func (c *callback) counts() (results, words int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.results, c.words
}

func (c *callback) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// printer serialises writes from the main goroutine and the SDK's.
type printer struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *printer) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format, args...)
}

func (p *printer) println(s string) { p.printf("%s\n", s) }

// sdkOverrides are the variables the SDK's ClientOptions.Parse reads from
// the process environment and lets override what it is given: the host
// and path it dials, TLS verification, redirects, and (for
// DEEPGRAM_ACCESS_TOKEN) the credential itself, which would replace the
// leased key. DEEPGRAM_API_KEY is harmless here: the SDK uses it only when
// it is given no key.
var sdkOverrides = []string{
	"DEEPGRAM_HOST",
	"DEEPGRAM_ACCESS_TOKEN",
	"DEEPGRAM_API_VERSION",
	"DEEPGRAM_API_PATH",
	"DEEPGRAM_SELF_HOSTED",
	"DEEPGRAM_WEBSOCKET_SKIP_AUTH",
	"DEEPGRAM_WEBSOCKET_REDIRECT",
}

// checkSDKEnv refuses to run while a variable in sdkOverrides is set. It
// reads the process environment (not run's env) because that is what the
// SDK reads.
func checkSDKEnv() error {
	var set []string
	for _, name := range sdkOverrides {
		if os.Getenv(name) != "" {
			set = append(set, name)
		}
	}
	if len(set) > 0 {
		return fmt.Errorf("unset %s: the Deepgram SDK would let it override the host or the credential this program gives it", strings.Join(set, ", "))
	}
	return nil
}
