package fakelisten_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dvonthenen/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/internal/fakelisten"
)

// sessions collects the Sessions a handler records.
type sessions chan fakelisten.Session

func newSessions() sessions { return make(sessions, 16) }

func (c sessions) record(s fakelisten.Session) { c <- s }

// only returns the one Session recorded so far, failing unless there is
// exactly one: callers have already synchronised with its recording.
func (c sessions) only(t *testing.T) fakelisten.Session {
	t.Helper()
	var got []fakelisten.Session
	for len(c) > 0 {
		got = append(got, <-c)
	}
	require.Len(t, got, 1, "sessions recorded")
	return got[0]
}

// dialQuery opens a stream with testKey and query, on a handler that
// records into rec.
func dialQuery(t *testing.T, f *fake, query string) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: waitLimit}
	conn, _, err := d.Dial(f.wsURL(query), http.Header{"Authorization": {"Token " + testKey}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// TestSessionOfRawAudio: raw audio of a fixed sample size is timed from
// its byte count, exactly, and the stream is recorded before its Metadata
// message is sent.
func TestSessionOfRawAudio(t *testing.T) {
	tests := []struct {
		name   string
		query  string
		frames []int // bytes per frame
		want   time.Duration
	}{
		{"linear16 16 kHz mono", "encoding=linear16&sample_rate=16000", []int{32000, 16000, 16000}, 2 * time.Second},
		{"linear16 8 kHz stereo", "encoding=linear16&sample_rate=8000&channels=2", []int{32000}, time.Second},
		{"mulaw 8 kHz", "encoding=mulaw&sample_rate=8000", []int{4000, 4000}, time.Second},
		{"linear32 48 kHz stereo, any case", "encoding=LINEAR32&sample_rate=48000&channels=2", []int{384000}, time.Second},
		{"a part of a sample", "encoding=linear16&sample_rate=16000", []int{3}, 93750 * time.Nanosecond},
		{"unusable sample rate falls back to 16 kHz", "encoding=linear16&sample_rate=99999999", []int{32000}, time.Second},
		{"no audio", "encoding=linear16&sample_rate=16000", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newSessions()
			f := newFake(t, known, fakelisten.WithRecorder(rec.record))
			conn := dialQuery(t, f, tt.query+"&tag=team-a&tag=dglease:user=bob")
			total := 0
			for _, n := range tt.frames {
				require.NoError(t, conn.WriteMessage(websocket.BinaryMessage, make([]byte, n)))
				assert.Equal(t, "Results", next(t, conn).Type)
				total += n
			}
			send(t, conn, "CloseStream")
			md := next(t, conn)
			require.Equal(t, "Metadata", md.Type)

			s := rec.only(t) // recorded before the Metadata went out
			assert.Equal(t, "key", s.Account)
			assert.Equal(t, md.RequestID, s.RequestID)
			assert.Equal(t, []string{"team-a", "dglease:user=bob"}, s.Tags)
			assert.Equal(t, int64(total), s.Bytes)
			assert.Equal(t, tt.want, s.Audio)
			assert.False(t, s.Ended.Before(s.Opened), "ended %v before it opened %v", s.Ended, s.Opened)
			code, _ := closeCode(t, conn) // answers the close frame
			assert.Equal(t, websocket.CloseNormalClosure, code)
			f.waitReturned(t)
			assert.Empty(t, rec, "recorded once")
		})
	}
}

// TestSessionOfContainerisedAudioIsWallTime: audio the fake cannot decode
// counts the wall time from the opening to the last audio frame. In a
// bubble, time is exact.
func TestSessionOfContainerisedAudioIsWallTime(t *testing.T) {
	for _, query := range []string{"", "?encoding=opus&sample_rate=48000"} {
		t.Run("query "+query, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				rec := newSessions()
				epoch := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
				start := time.Now()
				clock := func() time.Time { return epoch.Add(time.Since(start)) } // a clock of the caller's
				conn, returned := openInBubbleAt(t, "ws://fake.invalid/v1/listen"+query,
					fakelisten.WithRecorder(rec.record), fakelisten.WithClock(clock))

				for _, gap := range []time.Duration{250 * time.Millisecond, time.Second, 1750 * time.Millisecond} {
					time.Sleep(gap)
					require.NoError(t, conn.WriteMessage(websocket.BinaryMessage, make([]byte, 500)))
					_, _, err := conn.ReadMessage()
					require.NoError(t, err)
				}
				time.Sleep(5 * time.Second) // silence after the last frame is not audio
				require.NoError(t, conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"CloseStream"}`)))
				_, _, err := conn.ReadMessage() // the Metadata
				require.NoError(t, err)

				s := rec.only(t)
				assert.Equal(t, int64(1500), s.Bytes)
				assert.Equal(t, 3*time.Second, s.Audio, "from the opening to the last audio frame")
				assert.Equal(t, epoch, s.Opened, "on the caller's clock")
				assert.Equal(t, epoch.Add(8*time.Second), s.Ended)
				_ = conn.Close()
				<-returned
			})
		})
	}
}

// TestSessionRecordedWhenConnectionDrops: a stream that ends without
// CloseStream is recorded when its connection ends, before ServeHTTP
// returns.
func TestSessionRecordedWhenConnectionDrops(t *testing.T) {
	rec := newSessions()
	f := newFake(t, known, fakelisten.WithRecorder(rec.record))
	conn := dialQuery(t, f, "encoding=linear16&sample_rate=16000")
	require.NoError(t, conn.WriteMessage(websocket.BinaryMessage, make([]byte, 8000)))
	require.Equal(t, "Results", next(t, conn).Type)
	require.NoError(t, conn.NetConn().Close())
	f.waitReturned(t)

	s := rec.only(t)
	assert.Equal(t, 250*time.Millisecond, s.Audio)
	assert.Nil(t, s.Tags)
}

// TestSessionOfGrantToken: the account is whatever Authenticate named,
// for either scheme.
func TestSessionOfGrantToken(t *testing.T) {
	rec := newSessions()
	f := newFake(t, known, fakelisten.WithRecorder(rec.record))
	conn, _, err := f.dial(t, nil, "bearer", testJWT)
	require.NoError(t, err)
	send(t, conn, "CloseStream")
	require.Equal(t, "Metadata", next(t, conn).Type)
	assert.Equal(t, "jwt", rec.only(t).Account)
	closeCode(t, conn)
	f.waitReturned(t)
}

func TestTagParametersChecked(t *testing.T) {
	tests := []struct {
		name   string
		key    string
		query  string
		status int
	}{
		{"128-byte tag", testKey, "tag=" + strings.Repeat("t", 128), http.StatusSwitchingProtocols},
		{"42 three-byte runes", testKey, "tag=" + strings.Repeat("日", 42), http.StatusSwitchingProtocols},
		{"129-byte tag", testKey, "tag=ok&tag=" + strings.Repeat("t", 129), http.StatusBadRequest},
		{"43 three-byte runes", testKey, "tag=" + strings.Repeat("日", 43), http.StatusBadRequest},
		{"empty tag", testKey, "tag=", http.StatusBadRequest},
		{"bad key first", badKey, "tag=" + strings.Repeat("t", 129), http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, known)
			d := websocket.Dialer{HandshakeTimeout: waitLimit}
			conn, resp, err := d.Dial(f.wsURL(tt.query), http.Header{"Authorization": {"Token " + tt.key}})
			require.NotNil(t, resp)
			assert.Equal(t, tt.status, resp.StatusCode)
			if tt.status == http.StatusSwitchingProtocols {
				require.NoError(t, err)
				conn.Close()
				f.waitReturned(t)
				return
			}
			require.ErrorIs(t, err, websocket.ErrBadHandshake)
			raw, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			var body fakelisten.LegacyError
			require.NoError(t, json.Unmarshal(raw, &body), "body %s", raw)
			if tt.status == http.StatusBadRequest {
				assert.Equal(t, "BAD_REQUEST", body.ErrCode)
				assert.Contains(t, body.ErrMsg, "tag parameter")
				assert.NotContains(t, body.ErrMsg, "ttt", "the message quotes no tag")
			}
			assert.Equal(t, body.ErrMsg, resp.Header.Get("dg-error"))
		})
	}
}

// TestSessionRecordedBeforeMetadata: on CloseStream the stream is recorded
// before its Metadata message goes out, so that a client that has read
// the message can rely on the record. The recorder holds the stream until
// the test lets it go; in a bubble, "nothing sent yet" is exact.
func TestSessionRecordedBeforeMetadata(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		recorded := make(chan fakelisten.Session, 1)
		conn, returned := openInBubbleAt(t, "ws://fake.invalid/v1/listen?encoding=linear16",
			fakelisten.WithRecorder(func(s fakelisten.Session) {
				recorded <- s
				<-release
			}))
		msgs := make(chan string, 4)
		go func() {
			defer close(msgs)
			for {
				_, data, err := conn.ReadMessage()
				if err != nil {
					return
				}
				msgs <- string(data)
			}
		}()
		require.NoError(t, conn.WriteMessage(websocket.BinaryMessage, make([]byte, 3200)))
		require.NoError(t, conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"CloseStream"}`)))
		synctest.Wait()
		require.Len(t, recorded, 1, "recorded on CloseStream")
		assert.Len(t, msgs, 1, "only the Results: no Metadata while the stream is being recorded")

		close(release)
		<-returned
		var got []string
		for m := range msgs {
			got = append(got, m)
		}
		require.Len(t, got, 2)
		assert.Contains(t, got[1], `"type":"Metadata"`)
		assert.Equal(t, 100*time.Millisecond, (<-recorded).Audio)
	})
}
