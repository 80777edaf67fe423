package fakelisten

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/dvonthenen/websocket"

	"github.com/dglease/dglease/internal/dgtag"
)

// Authenticate reports whether a credential may open a stream now: a nil
// error lets it in, any error refuses it with 401. scheme is "token" (an
// API key) or "bearer" (a grant JWT), always lower-case; secret is the
// credential. account names, for the caller's own records, whom the
// stream's audio is to be counted against (e.g. a key ID): it is handed
// back in the stream's [Session] (see [WithRecorder]), so that the handler
// never keeps the secret. The error's text is never sent to the client. It
// is called once per stream, before the upgrade, and must be safe for
// concurrent use.
type Authenticate func(scheme, secret string) (account string, err error)

// Schemes passed to [Authenticate].
const (
	SchemeToken  = "token"
	SchemeBearer = "bearer"
)

// Handler returns the fake /v1/listen endpoint. Each request is checked
// with auth, upgraded to a WebSocket and served until the stream ends;
// ServeHTTP returns once the connection is closed.
//
// Handler panics if auth is nil or an option is invalid, as it is meant to
// be set up once, at the start of a test.
func Handler(auth Authenticate, opts ...Option) http.Handler {
	if auth == nil {
		panic("fakelisten: Handler needs a non-nil Authenticate")
	}
	cfg := defaultConfig()
	for _, o := range opts {
		if err := o.apply(&cfg); err != nil {
			panic(err)
		}
	}
	return &handler{
		auth: auth,
		cfg:  cfg,
		upgrader: websocket.Upgrader{
			// Deepgram takes streams from browser pages of any origin.
			CheckOrigin: func(*http.Request) bool { return true },
		},
	}
}

type handler struct {
	auth     Authenticate
	cfg      config
	upgrader websocket.Upgrader
}

// Messages of the 401 answer. They never quote the credential.
const (
	msgNoCredential      = "No credentials found: send Authorization: Token <key> (or Bearer <jwt>), or the WebSocket subprotocols token, <key> (or bearer, <jwt>)."
	msgInvalidCredential = "Invalid credentials."
)

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	requestID := NewUUID()
	w.Header().Set("dg-request-id", requestID) // for every answer, the upgrader's and refuse's too
	cred, ok := credentialOf(r)
	if !ok {
		refuse(w, requestID, http.StatusUnauthorized, "INVALID_AUTH", msgNoCredential)
		return
	}
	account, err := h.auth(cred.scheme, cred.secret)
	if err != nil {
		refuse(w, requestID, http.StatusUnauthorized, "INVALID_AUTH", msgInvalidCredential)
		return
	}
	q := r.URL.Query()
	if msg := checkTags(q["tag"]); msg != "" {
		refuse(w, requestID, http.StatusBadRequest, "BAD_REQUEST", msg)
		return
	}

	header := http.Header{}
	header.Set("dg-request-id", requestID)
	if cred.subprotocol != "" {
		// Browsers fail the handshake unless the server picks one of the
		// protocols they offered: answer the scheme, never the secret.
		header.Set("Sec-WebSocket-Protocol", cred.subprotocol)
	}
	conn, err := h.upgrader.Upgrade(w, r, header)
	if err != nil {
		return // Upgrade has answered the client already.
	}
	newStream(conn, h.cfg, requestID, account, q).serve()
}

// credential is what a client presented to open a stream.
type credential struct {
	scheme      string // SchemeToken or SchemeBearer
	secret      string
	subprotocol string // the scheme as offered in Sec-WebSocket-Protocol, if it came from there
}

// credentialOf finds the credential in the Authorization header or, as
// browsers send it, in the first two entries of the Sec-WebSocket-Protocol
// list (any further entries are ignored). The header wins when both are
// present.
func credentialOf(r *http.Request) (credential, bool) {
	if v := r.Header.Get("Authorization"); v != "" {
		scheme, secret := ParseAuthorization(v)
		scheme, ok := parseScheme(scheme)
		if !ok || secret == "" {
			return credential{}, false
		}
		return credential{scheme: scheme, secret: secret}, true
	}
	// Browsers send [scheme, secret]; Deepgram's JavaScript SDK (5.x) adds
	// "x-deepgram-session-id", <uuid> after them. Only the first two count.
	protocols := subprotocols(r)
	if len(protocols) < 2 {
		return credential{}, false
	}
	scheme, ok := parseScheme(protocols[0])
	if !ok || protocols[1] == "" {
		return credential{}, false
	}
	return credential{scheme: scheme, secret: protocols[1], subprotocol: protocols[0]}, true
}

// ParseAuthorization splits an Authorization header value into its
// lower-cased scheme and its credential, both trimmed of spaces; either may
// be empty. It does not check the scheme.
func ParseAuthorization(h string) (scheme, secret string) {
	scheme, secret, _ = strings.Cut(strings.TrimSpace(h), " ")
	return strings.ToLower(scheme), strings.TrimSpace(secret)
}

// parseScheme returns s as SchemeToken or SchemeBearer, in any case.
func parseScheme(s string) (string, bool) {
	switch strings.ToLower(s) {
	case SchemeToken:
		return SchemeToken, true
	case SchemeBearer:
		return SchemeBearer, true
	}
	return "", false
}

// subprotocols lists the client's Sec-WebSocket-Protocol values over all
// header lines, in order.
func subprotocols(r *http.Request) []string {
	var out []string
	for _, line := range r.Header.Values("Sec-WebSocket-Protocol") {
		for p := range strings.SplitSeq(line, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// refuse answers status in Deepgram's legacy error shape; ServeHTTP has
// set the dg-request-id header. msg must not hold a secret.
func refuse(w http.ResponseWriter, requestID string, status int, code, msg string) {
	body, _ := json.Marshal(LegacyError{ErrCode: code, ErrMsg: msg, RequestID: requestID})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("dg-error", msg)
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// checkTags returns why the query's tag parameters would be refused
// (internal/dgtag's rule), or "". The message quotes no tag.
func checkTags(tags []string) string {
	for i, t := range tags {
		if p := dgtag.Problem(t); p != "" {
			return fmt.Sprintf("tag parameter %d %s", i+1, p)
		}
	}
	return ""
}

// NewUUID returns a random version 4 UUID, the shape of Deepgram's request,
// project and key IDs.
func NewUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
