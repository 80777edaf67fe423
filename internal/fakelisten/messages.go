package fakelisten

// Wire shapes of the messages the fake sends, field for field as the
// Deepgram Go SDK v3.6.0 decodes them (pkg/api/listen/v1/websocket/interfaces,
// unchanged since v3.5.0).

// Message types the server sends.
const (
	typeResults       = "Results"
	typeMetadata      = "Metadata"
	typeSpeechStarted = "SpeechStarted"
	typeUtteranceEnd  = "UtteranceEnd"
)

// Control message types the client sends as text frames.
const (
	typeKeepAlive   = "KeepAlive"
	typeFinalize    = "Finalize"
	typeCloseStream = "CloseStream"
)

// Fixed model facts reported in Results and Metadata.
const (
	modelVersion = "fake"
	modelArch    = "fake"
	modelUUID    = "fa4e0000-0000-4000-8000-000000000000"
	defaultModel = "general"
)

type controlMessage struct {
	Type string `json:"type"`
}

type resultsMessage struct {
	Type         string          `json:"type"`
	ChannelIndex []int           `json:"channel_index"`
	Duration     float64         `json:"duration"`
	Start        float64         `json:"start"`
	IsFinal      bool            `json:"is_final"`
	SpeechFinal  bool            `json:"speech_final"`
	Channel      channel         `json:"channel"`
	Metadata     resultsMetadata `json:"metadata"`
	FromFinalize bool            `json:"from_finalize"`
}

type channel struct {
	Alternatives []alternative `json:"alternatives"`
}

type alternative struct {
	Transcript string  `json:"transcript"`
	Confidence float64 `json:"confidence"`
	Words      []word  `json:"words"`
}

type word struct {
	Word           string  `json:"word"`
	Start          float64 `json:"start"`
	End            float64 `json:"end"`
	Confidence     float64 `json:"confidence"`
	PunctuatedWord string  `json:"punctuated_word"`
}

type modelInfo struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Arch    string `json:"arch"`
}

type resultsMetadata struct {
	RequestID string    `json:"request_id"`
	ModelInfo modelInfo `json:"model_info"`
	ModelUUID string    `json:"model_uuid"`
}

type metadataMessage struct {
	Type           string               `json:"type"`
	TransactionKey string               `json:"transaction_key"`
	RequestID      string               `json:"request_id"`
	Sha256         string               `json:"sha256"`
	Created        string               `json:"created"`
	Duration       float64              `json:"duration"`
	Channels       int                  `json:"channels"`
	Models         []string             `json:"models"`
	ModelInfo      map[string]modelInfo `json:"model_info"`
}

// speechStartedMessage is sent when speech starts (vad_events=true), as
// documented at https://developers.deepgram.com/docs/speech-started:
// {"type":"SpeechStarted","channel":[0,1],"timestamp":<seconds>}.
type speechStartedMessage struct {
	Type      string  `json:"type"`
	Channel   []int   `json:"channel"`
	Timestamp float64 `json:"timestamp"`
}

// utteranceEndMessage is sent after the last word of an utterance
// (utterance_end_ms with interim_results=true), as documented at
// https://developers.deepgram.com/docs/utterance-end:
// {"type":"UtteranceEnd","channel":[0,1],"last_word_end":<seconds>}.
type utteranceEndMessage struct {
	Type        string  `json:"type"`
	Channel     []int   `json:"channel"`
	LastWordEnd float64 `json:"last_word_end"`
}

// LegacyError is Deepgram's legacy error body, answered when a stream is
// refused before the upgrade (and by the Manage API, which keystest fakes).
type LegacyError struct {
	// ErrCode is the error code, e.g. "INVALID_AUTH".
	ErrCode string `json:"err_code"`
	// ErrMsg is the human-readable message.
	ErrMsg string `json:"err_msg"`
	// RequestID is the answer's request ID, as in its dg-request-id header.
	RequestID string `json:"request_id"`
}
