// Package fakelisten fakes Deepgram's streaming speech-to-text endpoint,
// the WebSocket at /v1/listen, for tests of code that hands out credentials
// and of clients that stream with them:
//
//	accounts := map[string]string{"token " + key: "key-1"}
//	srv := httptest.NewServer(fakelisten.Handler(func(scheme, secret string) (string, error) {
//		account, ok := accounts[scheme+" "+secret]
//		if !ok {
//			return "", errors.New("unknown credential")
//		}
//		return account, nil // handed back with the stream's Session
//	}, fakelisten.WithRecorder(func(s fakelisten.Session) { log.Print(s.Account, s.Audio) })))
//	defer srv.Close()
//	// Point the SDK's live client at "ws://" + srv.Listener.Addr().String().
//
// # Opening a stream
//
// The credential is taken from the Authorization header ("Token <key>",
// "token <key>" or "Bearer <jwt>") or, as browsers send it, from the
// Sec-WebSocket-Protocol list "token, <key>" or "bearer, <jwt>": the
// first two entries are the scheme and the secret, and any further ones are
// ignored (Deepgram's JavaScript SDK 5.x in a browser offers
// "x-deepgram-session-id, <uuid>" after them). The header wins when both
// are present. When the list was used, the handshake answers with the
// scheme as the selected subprotocol, as browsers require. A request without a usable credential, or one the
// [Authenticate] function refuses, gets 401 before the upgrade, with a
// body in Deepgram's legacy error shape
// ({"err_code":"INVALID_AUTH","err_msg":...,"request_id":...}) and the
// message repeated in a dg-error header. Neither ever quotes the
// credential or the text of Authenticate's error. Every answer carries a
// dg-request-id header.
//
// # Streaming
//
// Each non-empty binary frame is audio and is answered by one final
// Results message (is_final and speech_final true) covering exactly that
// frame: its start and duration follow from the encoding, sample_rate and
// channels query parameters (default linear16, 16000 Hz, mono), and its
// transcript is the next phrase of a fixed list (see [WithTranscript]),
// so n frames give n results, always in the same order. Each frame is
// treated as one utterance followed by silence, so the optional messages
// the query may ask for come around each final Results, in this order:
//
//   - vad_events=true: a SpeechStarted message,
//     {"type":"SpeechStarted","channel":[0,<channels>],"timestamp":<frame start>}
//     (https://developers.deepgram.com/docs/speech-started);
//   - interim_results=true: an interim Results message (is_final and
//     speech_final false) over the same audio, with the first half of the
//     phrase's words, rounded up (https://developers.deepgram.com/docs/interim-results);
//   - the final Results message;
//   - utterance_end_ms=<positive integer> together with interim_results=true:
//     an UtteranceEnd message,
//     {"type":"UtteranceEnd","channel":[0,<channels>],"last_word_end":<end of the last word>}
//     (https://developers.deepgram.com/docs/utterance-end). Deepgram
//     documents that UtteranceEnd needs interim results; without
//     interim_results=true the parameter is ignored.
//
// "true" is matched in any case; any other value leaves a message off.
//
// Text frames are control messages: KeepAlive does nothing but keep the
// stream alive; Finalize is answered by an empty Results message with
// from_finalize true; CloseStream is answered by a Metadata message (with
// the sha256 and duration of all audio received) and a normal close frame.
// Other query parameters are accepted and ignored, but for tag (see
// Accounting) and those above; model, if given, is echoed as the model
// name. Results and Metadata time
// any audio as if it were in the query's format (two bytes a sample for
// an encoding without a fixed sample size, or none); a [Session] times
// such audio by the wall clock instead.
//
// # Accounting
//
// With [WithRecorder], every stream is reported once, when it ends, as a
// [Session]: the account [Authenticate] named, the query's tag parameters,
// the bytes received and the audio's duration (exact from the byte count
// for raw audio of a fixed sample size; wall time for containerised or
// compressed audio, which the fake does not decode). A stream is recorded
// on CloseStream before its Metadata message is sent, or else when the
// connection ends. A tag parameter that is empty or longer than 128 bytes
// (Deepgram's documented limit, "Tags are limited to 128 characters per
// tag", https://developers.deepgram.com/docs/tagging, read strictly as
// bytes) gets 400 before the upgrade, in the same legacy shape with
// err_code BAD_REQUEST, after the credential is checked.
//
// # Modelling choices
//
//   - Credentials are checked once, when the stream opens. A stream stays
//     open after its key is deleted or expires, or its grant token
//     expires: Deepgram's guidance to delete a key as soon as its socket
//     is open rests on that, although no official page states it.
//   - A stream that receives no frame for the idle timeout (default ten
//     seconds, see [WithIdleTimeout]) is closed with code 1011 and
//     Deepgram's NET-0001 reason. Any frame, audio or text, resets the
//     timer, as that reason's wording says.
//   - A text frame that is not one of the three control messages closes
//     the stream with code 1008 (Deepgram's answer is undocumented; the
//     fake picks the stricter one). Empty binary frames are ignored.
//   - SpeechStarted and UtteranceEnd do not come from listening: every
//     audio frame is one utterance, whatever it holds (silence included),
//     and UtteranceEnd follows its final Results at once, whatever
//     utterance_end_ms says, rather than after that much silence. Deepgram
//     sends them when its models hear speech start and a gap of
//     utterance_end_ms after the last word; a client that needs a gap to
//     pass in wall time will not see one here.
//
// ServeHTTP returns once the connection is closed, and every goroutine a
// stream starts has ended by then. Closing an httptest.Server does not
// close streams already upgraded: close the clients, or let them idle out.
package fakelisten
