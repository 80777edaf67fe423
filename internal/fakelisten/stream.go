package fakelisten

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"hash"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/dvonthenen/websocket"
)

const (
	// idleReason is Deepgram's own NET-0001 close reason.
	idleReason = "Deepgram did not receive audio data or a text message within the timeout window. See https://dpgr.am/net0001"
	// badMessageReason closes a stream that sent a text frame the fake
	// does not know.
	badMessageReason = "fakelisten: text frame is not a KeepAlive, Finalize or CloseStream message"

	// writeTimeout bounds every write, so a client that stops reading
	// cannot hold a stream open.
	writeTimeout = 10 * time.Second
	// closeWait is how long the fake waits for the client's close frame
	// after sending its own.
	closeWait = 5 * time.Second
	// maxFrame bounds one client frame.
	maxFrame = 8 << 20
)

// stream is one open /v1/listen connection. Its reader runs on the
// ServeHTTP goroutine; one writer goroutine, started and waited for by
// serve, makes every write except the close frame echo of the WebSocket
// library (which it may make concurrently) and owns the idle timer.
type stream struct {
	conn      *websocket.Conn
	cfg       config
	requestID string
	account   string
	tags      []string
	model     string
	format    audioFormat
	events    events    // the optional messages the query asked for
	created   time.Time // on cfg.now's clock
	opened    time.Time // on time.Now's monotonic clock

	out      chan outbound // reader → writer, in order
	activity chan struct{} // reader → writer: a message arrived; buffered 1
	done     chan struct{} // closed when the reader has stopped

	// Reader-owned state.
	bytes     int64     // audio bytes received
	audio     hash.Hash // sha256 of the audio received
	results   int       // Results messages sent
	ending    bool      // CloseStream received or a close frame queued
	lastAudio time.Time // when the last audio frame arrived (monotonic); zero before
	recorded  bool      // the Session went to cfg.record
}

// outbound is one thing for the writer to send: a JSON message, or a close
// frame when close is set.
type outbound struct {
	msg    any
	close  bool
	code   int
	reason string
}

func newStream(conn *websocket.Conn, cfg config, requestID, account string, q url.Values) *stream {
	model := q.Get("model")
	if model == "" {
		model = defaultModel
	}
	return &stream{
		conn:      conn,
		cfg:       cfg,
		requestID: requestID,
		account:   account,
		tags:      q["tag"],
		model:     model,
		format:    formatOf(q),
		events:    eventsOf(q),
		created:   cfg.now().UTC(),
		opened:    time.Now(),
		out:       make(chan outbound, 16),
		activity:  make(chan struct{}, 1),
		done:      make(chan struct{}),
		audio:     sha256.New(),
	}
}

// serve runs the stream until the connection ends, then closes it.
func (s *stream) serve() {
	s.conn.SetReadLimit(maxFrame)
	writerDone := make(chan struct{})
	go s.write(writerDone)
	s.read()
	s.record()
	close(s.done)
	<-writerDone
	_ = s.conn.Close()
}

// read handles client frames until the connection fails or closes.
func (s *stream) read() {
	for {
		kind, data, err := s.conn.ReadMessage()
		if err != nil {
			return
		}
		select {
		case s.activity <- struct{}{}:
		default:
		}
		if s.ending {
			continue // wait for the client's close frame
		}
		switch kind {
		case websocket.BinaryMessage:
			if len(data) > 0 {
				for _, m := range s.transcribe(data) {
					s.out <- outbound{msg: m}
				}
			}
		case websocket.TextMessage:
			s.control(data)
		}
	}
}

func (s *stream) control(data []byte) {
	var m controlMessage
	if err := json.Unmarshal(data, &m); err != nil {
		m.Type = ""
	}
	switch m.Type {
	case typeKeepAlive:
	case typeFinalize:
		s.out <- outbound{msg: s.finalize()}
	case typeCloseStream:
		s.ending = true
		s.record() // before the Metadata: a client that read it finds the stream recorded
		s.out <- outbound{msg: s.metadata()}
		s.out <- outbound{close: true, code: websocket.CloseNormalClosure}
	default:
		s.ending = true
		s.out <- outbound{close: true, code: websocket.ClosePolicyViolation, reason: badMessageReason}
	}
}

// write sends what the reader queues and closes an idle stream, until the
// reader stops.
func (s *stream) write(done chan<- struct{}) {
	defer close(done)
	idle := time.NewTimer(s.cfg.idleTimeout)
	defer idle.Stop()
	closed := false // a close frame went out, or the connection broke
	shutdown := s.cfg.shutdown
	for {
		select {
		case <-s.done:
			return
		case <-shutdown:
			shutdown = nil
			if !closed {
				closed = true
				idle.Stop()
				s.sendClose(websocket.CloseGoingAway, "server shutting down")
			}
		case <-s.activity:
			if !closed {
				idle.Reset(s.cfg.idleTimeout)
			}
		case <-idle.C:
			if !closed {
				closed = true
				s.sendClose(websocket.CloseInternalServerErr, idleReason)
			}
		case m := <-s.out:
			switch {
			case closed:
			case m.close:
				closed = true
				idle.Stop()
				s.sendClose(m.code, m.reason)
			default:
				if err := s.sendJSON(m.msg); err != nil {
					closed = true
					_ = s.conn.Close() // ends the reader
				}
			}
		}
	}
}

func (s *stream) sendJSON(v any) error {
	if err := s.conn.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return err
	}
	return s.conn.WriteJSON(v)
}

// sendClose starts the closing handshake; the reader ends when the client
// answers, or after closeWait.
func (s *stream) sendClose(code int, reason string) {
	now := time.Now()
	err := s.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), now.Add(writeTimeout))
	if err != nil {
		_ = s.conn.Close()
		return
	}
	_ = s.conn.SetReadDeadline(now.Add(closeWait))
}

// transcribe turns one audio frame into the messages that answer it, in
// order: SpeechStarted (vad_events) at the frame's start, an interim
// Results with the first half of the phrase's words (interim_results), the
// final Results covering exactly that frame's audio, and UtteranceEnd
// (utterance_end_ms with interim_results) at its last word's end. Each
// frame is one utterance followed by silence.
func (s *stream) transcribe(audio []byte) []any {
	start := s.format.seconds(s.bytes)
	s.bytes += int64(len(audio))
	s.lastAudio = time.Now()
	s.audio.Write(audio)
	duration := s.format.seconds(s.bytes) - start

	phrase := s.cfg.transcript[s.results%len(s.cfg.transcript)]
	s.results++
	fields := strings.Fields(phrase)
	words := make([]word, len(fields))
	step := duration / float64(len(fields))
	for i, f := range fields {
		words[i] = word{
			Word:           f,
			PunctuatedWord: f,
			Start:          start + float64(i)*step,
			End:            start + float64(i+1)*step,
			Confidence:     0.99,
		}
	}

	var msgs []any
	if s.events.vad {
		msgs = append(msgs, speechStartedMessage{Type: typeSpeechStarted, Channel: s.channel(), Timestamp: start})
	}
	if s.events.interim {
		heard := words[:(len(words)+1)/2]
		msgs = append(msgs, s.resultsMessage(start, duration, alternative{Transcript: transcriptOf(heard), Confidence: 0.9, Words: heard}, false, false))
	}
	msgs = append(msgs, s.resultsMessage(start, duration, alternative{Transcript: phrase, Confidence: 0.99, Words: words}, true, false))
	if s.events.utteranceEnd {
		msgs = append(msgs, utteranceEndMessage{Type: typeUtteranceEnd, Channel: s.channel(), LastWordEnd: words[len(words)-1].End})
	}
	return msgs
}

// transcriptOf joins the words of ws.
func transcriptOf(ws []word) string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = w.PunctuatedWord
	}
	return strings.Join(out, " ")
}

// finalize answers a Finalize: every frame has been transcribed already,
// so the flushed result is empty.
func (s *stream) finalize() resultsMessage {
	return s.resultsMessage(s.format.seconds(s.bytes), 0, alternative{Words: []word{}}, true, true)
}

// resultsMessage is a Results message; final sets is_final and
// speech_final, which an interim result has false.
func (s *stream) resultsMessage(start, duration float64, alt alternative, final, fromFinalize bool) resultsMessage {
	return resultsMessage{
		Type:         typeResults,
		ChannelIndex: s.channel(),
		Duration:     duration,
		Start:        start,
		IsFinal:      final,
		SpeechFinal:  final,
		Channel:      channel{Alternatives: []alternative{alt}},
		Metadata: resultsMetadata{
			RequestID: s.requestID,
			ModelInfo: s.modelInfo(),
			ModelUUID: modelUUID,
		},
		FromFinalize: fromFinalize,
	}
}

// channel is the [index, count] pair Results (channel_index),
// SpeechStarted and UtteranceEnd (channel) carry; the fake transcribes
// every channel as one, index 0.
func (s *stream) channel() []int { return []int{0, s.format.channels} }

func (s *stream) metadata() metadataMessage {
	return metadataMessage{
		Type:           typeMetadata,
		TransactionKey: "deprecated",
		RequestID:      s.requestID,
		Sha256:         hex.EncodeToString(s.audio.Sum(nil)),
		Created:        s.created.Format(time.RFC3339Nano),
		Duration:       s.format.seconds(s.bytes),
		Channels:       s.format.channels,
		Models:         []string{modelUUID},
		ModelInfo:      map[string]modelInfo{modelUUID: s.modelInfo()},
	}
}

// record hands the stream's Session to cfg.record, once. Called by the
// reader only.
func (s *stream) record() {
	if s.recorded || s.cfg.record == nil {
		return
	}
	s.recorded = true
	sess := Session{
		Account:   s.account,
		RequestID: s.requestID,
		Tags:      s.tags,
		Opened:    s.created,
		Ended:     s.cfg.now().UTC(),
		Bytes:     s.bytes,
	}
	switch {
	case s.format.fixed:
		sess.Audio = s.format.duration(s.bytes)
	case !s.lastAudio.IsZero():
		sess.Audio = s.lastAudio.Sub(s.opened)
	}
	s.cfg.record(sess)
}

func (s *stream) modelInfo() modelInfo {
	return modelInfo{Name: s.model, Version: modelVersion, Arch: modelArch}
}

// events are the optional messages a stream's query asked for.
type events struct {
	interim      bool // interim_results=true
	vad          bool // vad_events=true
	utteranceEnd bool // utterance_end_ms=<positive integer>, with interim_results=true
}

// eventsOf reads interim_results, vad_events and utterance_end_ms from the
// query. Deepgram documents that UtteranceEnd needs interim results
// (https://developers.deepgram.com/docs/utterance-end): without
// interim_results=true, utterance_end_ms is ignored.
func eventsOf(q url.Values) events {
	e := events{
		interim: strings.EqualFold(q.Get("interim_results"), "true"),
		vad:     strings.EqualFold(q.Get("vad_events"), "true"),
	}
	if ms, err := strconv.Atoi(q.Get("utterance_end_ms")); err == nil && ms > 0 {
		e.utteranceEnd = e.interim
	}
	return e
}

// audioFormat is what the query says about the audio, enough to turn byte
// counts into seconds.
type audioFormat struct {
	bytesPerSample int
	sampleRate     int
	channels       int
	// fixed: the encoding names samples of a fixed size (linear16,
	// linear32, mulaw, alaw), so audio time follows from a byte count;
	// otherwise (a container, or compressed) bytesPerSample is a guess.
	fixed bool
}

// Bounds of the sample_rate and channels the fake takes; beyond them a
// value is unusable.
const (
	maxSampleRate = 1_000_000
	maxChannels   = 1024
)

// formatOf reads encoding, sample_rate and channels from the query.
// Missing or unusable values fall back to linear16, 16000 Hz, mono;
// encodings without a fixed sample size count as two bytes a sample.
func formatOf(q url.Values) audioFormat {
	f := audioFormat{bytesPerSample: 2, sampleRate: 16000, channels: 1}
	switch strings.ToLower(q.Get("encoding")) {
	case "linear16":
		f.fixed = true
	case "mulaw", "alaw":
		f.bytesPerSample, f.fixed = 1, true
	case "linear32":
		f.bytesPerSample, f.fixed = 4, true
	}
	if n, err := strconv.Atoi(q.Get("sample_rate")); err == nil && n > 0 && n <= maxSampleRate {
		f.sampleRate = n
	}
	if n, err := strconv.Atoi(q.Get("channels")); err == nil && n > 0 && n <= maxChannels {
		f.channels = n
	}
	return f
}

// seconds is duration in seconds, for the messages' float fields.
func (f audioFormat) seconds(bytes int64) float64 { return f.duration(bytes).Seconds() }
