package keystest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/dglease/dglease/internal/dgtag"
	"github.com/dglease/dglease/internal/fakelisten"
)

// Wire shapes (see /v1 key management in Deepgram's API reference).
type (
	memberJSON struct {
		MemberID  string `json:"member_id"`
		Email     string `json:"email"`
		FirstName string `json:"first_name"`
		LastName  string `json:"last_name"`
	}
	keyJSON struct {
		APIKeyID       string   `json:"api_key_id"`
		Key            string   `json:"key,omitempty"`
		Comment        string   `json:"comment"`
		Scopes         []string `json:"scopes"`
		Tags           []string `json:"tags,omitempty"`
		Created        string   `json:"created"`
		ExpirationDate string   `json:"expiration_date,omitempty"`
	}
	memberKeyJSON struct {
		Member memberJSON `json:"member"`
		APIKey keyJSON    `json:"api_key"`
	}
	// getKeyJSON is the answer to GET /v1/projects/{id}/keys/{key_id} in
	// the shape of Deepgram's current reference
	// (https://developers.deepgram.com/reference/manage/keys/get: item →
	// member → api_key), which the JavaScript SDK 5.x types as
	// GetProjectKeyV1Response: the key sits inside the member.
	getKeyJSON struct {
		Item struct {
			Member memberWithKeyJSON `json:"member"`
		} `json:"item"`
	}
	memberWithKeyJSON struct {
		memberJSON
		APIKey keyJSON `json:"api_key"`
	}
	currentError struct {
		Category  string `json:"category"`
		Message   string `json:"message"`
		Details   string `json:"details"`
		RequestID string `json:"request_id"`
	}
)

// maxRequestBody bounds the request bodies the fake reads.
const maxRequestBody = 1 << 20

// answer is what an endpoint answers.
type answer struct {
	status int
	body   any
	header http.Header
}

// errShape is the error body shape an endpoint uses.
type errShape int

const (
	shapeLegacy  errShape = iota // {"err_code","err_msg","request_id"}: Manage API
	shapeCurrent                 // {"category","message","details","request_id"}: /v1/auth/grant
)

// call is one request being served.
type call struct {
	op        Op
	shape     errShape
	project   string
	keyID     string
	requestID string
	scheme    string // Authorization scheme, lower-cased
	secret    string // Authorization credential; never recorded
	r         *http.Request
	body      []byte
}

func (c *call) fail(status int, code, msg string) answer {
	if c.shape == shapeCurrent {
		return answer{status: status, body: currentError{Category: code, Message: msg, Details: "", RequestID: c.requestID}}
	}
	return answer{status: status, body: fakelisten.LegacyError{ErrCode: code, ErrMsg: msg, RequestID: c.requestID}}
}

// codeFor is the error code the fake uses for status when none is more
// specific, e.g. 503 -> "SERVICE_UNAVAILABLE".
func codeFor(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "INVALID_AUTH"
	case http.StatusForbidden:
		return "INSUFFICIENT_PERMISSIONS"
	}
	text := http.StatusText(status)
	if text == "" {
		return "ERROR"
	}
	return strings.ToUpper(codeReplacer.Replace(text))
}

// codeReplacer turns a status text into an error code.
var codeReplacer = strings.NewReplacer(" ", "_", "-", "_", "'", "")

// opScope is the scope each call needs.
var opScope = map[Op]string{OpList: "keys:read", OpGet: "keys:read", OpCreate: "keys:write", OpDelete: "keys:write", OpGrant: "keys:write", OpUsage: "usage:read"}

// serveAPI serves every route but /v1/listen.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	c := &call{requestID: fakelisten.NewUUID(), r: r}
	c.scheme, c.secret = fakelisten.ParseAuthorization(r.Header.Get("Authorization"))
	w.Header().Set("dg-request-id", c.requestID)
	rec := Request{
		RequestID: c.requestID,
		Method:    r.Method,
		Path:      r.URL.Path,
		Query:     r.URL.RawQuery,
		Scheme:    c.scheme,
	}
	defer func() {
		s.mu.Lock()
		rec.Time = s.now()
		s.requests = append(s.requests, rec)
		ended := s.callEnded
		s.mu.Unlock()
		if ended != nil {
			ended <- rec
		}
	}()

	a, lost := s.route(c)
	rec.Op, rec.KeyID = c.op, c.keyID
	if lost {
		// No answer: the client gave up, the server closed, or the answer
		// is lost on purpose. Status stays 0.
		panic(http.ErrAbortHandler)
	}
	rec.Status = a.status
	for k, v := range a.header {
		w.Header()[k] = v
	}
	var buf []byte
	switch b := a.body.(type) {
	case rawBody:
		buf = []byte(b)
	default:
		var err error
		buf, err = json.Marshal(b)
		if err != nil {
			panic("keystest: encoding answer: " + err.Error()) // fixed shapes: cannot happen
		}
		buf = append(buf, '\n')
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(buf)))
	w.WriteHeader(a.status)
	w.Write(buf)
}

// rawBody is an answer body sent as it is.
type rawBody string

// route finds the endpoint, applies injected faults and serves the call.
// lost reports that no answer must be sent.
func (s *Server) route(c *call) (a answer, lost bool) {
	r := c.r
	seg := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
	for _, x := range seg {
		if x == "" {
			return c.fail(http.StatusNotFound, "NOT_FOUND", "no such route: "+r.URL.Path), false
		}
	}
	allow := ""
	switch {
	case len(seg) == 2 && seg[0] == "v1" && seg[1] == "projects":
		allow = "GET"
		if r.Method == http.MethodGet {
			c.op = OpProjects
		}
	case len(seg) == 4 && seg[0] == "v1" && seg[1] == "projects" && seg[3] == "keys":
		allow, c.project = "GET, POST", seg[2]
		switch r.Method {
		case http.MethodGet:
			c.op = OpList
		case http.MethodPost:
			c.op = OpCreate
		}
	case len(seg) == 4 && seg[0] == "v1" && seg[1] == "projects" && seg[3] == "usage":
		allow, c.project = "GET", seg[2]
		if r.Method == http.MethodGet {
			c.op = OpUsage
		}
	case len(seg) == 5 && seg[0] == "v1" && seg[1] == "projects" && seg[3] == "keys":
		allow, c.project, c.keyID = "GET, DELETE", seg[2], seg[4]
		switch r.Method {
		case http.MethodGet:
			c.op = OpGet
		case http.MethodDelete:
			c.op = OpDelete
		}
	case len(seg) == 3 && seg[0] == "v1" && seg[1] == "auth" && seg[2] == "grant":
		allow, c.shape = "POST", shapeCurrent
		if r.Method == http.MethodPost {
			c.op = OpGrant
		}
	default:
		return c.fail(http.StatusNotFound, "NOT_FOUND", "no such route: "+r.URL.Path), false
	}
	if c.op == 0 {
		a = c.fail(http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", r.Method+" is not allowed here; allowed: "+allow)
		a.header = http.Header{"Allow": {allow}}
		return a, false
	}

	// Read the body before any wait: over a socket, net/http notices a
	// client that has gone away (and ends r.Context()) only once the body
	// has been read, so a hang or a latency wait on an unread body would
	// outlive its client, and the call could still take effect.
	body, readErr := io.ReadAll(io.LimitReader(r.Body, maxRequestBody+1))

	s.mu.Lock()
	in := s.takeInjected(c.op)
	waitStarted := s.waitStarted
	s.mu.Unlock()
	if waitStarted != nil && (in.latency > 0 || in.hang) {
		waitStarted <- c.op
	}
	if !s.wait(r.Context(), in.latency) {
		return answer{}, true
	}
	if in.hang {
		select {
		case <-r.Context().Done():
		case <-s.done:
		}
		return answer{}, true
	}
	if f := in.fault; f != nil {
		a = c.fail(f.Status, codeFor(f.Status), "fault injected by keystest")
		if f.Body != "" {
			a.body = rawBody(f.Body)
		}
		if f.RetryAfter > 0 {
			a.header = http.Header{"Retry-After": {strconv.FormatInt(int64(math.Ceil(f.RetryAfter.Seconds())), 10)}}
		}
		return a, false
	}

	if readErr != nil {
		return answer{}, true
	}
	if len(body) > maxRequestBody {
		return c.fail(http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE", "request body is larger than 1 MiB"), false
	}
	c.body = body

	s.mu.Lock()
	defer s.mu.Unlock()
	a = s.serveLocked(c)
	if a.status/100 == 2 && s.takeLose(c.op) {
		return a, true
	}
	return a, false
}

// wait waits d, or less if ctx is done or the server closes; it reports
// whether it waited d.
func (s *Server) wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-s.done:
		return false
	}
}

// serveLocked authenticates and serves c. s.mu is held.
func (s *Server) serveLocked(c *call) answer {
	caller, a, ok := s.authenticate(c)
	if !ok {
		return a
	}
	if c.op != OpProjects && c.op != OpGrant && c.project != s.projectID {
		return c.fail(http.StatusNotFound, "PROJECT_NOT_FOUND", "project not found")
	}
	if need := opScope[c.op]; need != "" && !caller.rights[need] {
		return c.fail(http.StatusForbidden, "INSUFFICIENT_PERMISSIONS", "the API key lacks the "+need+" scope (or a role that includes it)")
	}
	switch c.op {
	case OpProjects:
		type project struct {
			ProjectID string `json:"project_id"`
			Name      string `json:"name"`
		}
		return answer{status: http.StatusOK, body: struct {
			Projects []project `json:"projects"`
		}{[]project{{s.projectID, s.projectName}}}}
	case OpList:
		return s.list(c)
	case OpGet:
		k := s.byID[c.keyID]
		if k == nil || k.deleted() {
			return c.fail(http.StatusNotFound, "NOT_FOUND", "API key not found")
		}
		var body getKeyJSON
		body.Item.Member = memberWithKeyJSON{memberJSON: s.member, APIKey: wireKey(k, false)}
		return answer{status: http.StatusOK, body: body}
	case OpCreate:
		return s.create(c, caller.rights)
	case OpDelete:
		k := s.byID[c.keyID]
		if k == nil || k.deleted() {
			return c.fail(http.StatusNotFound, "NOT_FOUND", "API key not found")
		}
		s.deleteLocked(k)
		k.deletedByAPI = true
		return answer{status: http.StatusOK, body: struct {
			Message string `json:"message"`
		}{"Successfully deleted the API key!"}}
	case OpGrant:
		return s.grant(c, caller)
	case OpUsage:
		return s.usage(c)
	}
	panic("keystest: unrouted op " + c.op.String())
}

// authenticate finds the key the call authenticates with. s.mu is held.
func (s *Server) authenticate(c *call) (*keyRecord, answer, bool) {
	switch c.scheme {
	case fakelisten.SchemeToken:
	case fakelisten.SchemeBearer:
		return nil, c.fail(http.StatusUnauthorized, "INVALID_AUTH", "grant tokens (Bearer) are not accepted here; use an API key (Token)"), false
	case "":
		return nil, c.fail(http.StatusUnauthorized, "INVALID_AUTH", "missing Authorization header"), false
	default:
		return nil, c.fail(http.StatusUnauthorized, "INVALID_AUTH", "unsupported Authorization scheme"), false
	}
	k := s.liveKeyLocked(c.secret)
	if k == nil {
		return nil, c.fail(http.StatusUnauthorized, "INVALID_AUTH", "Invalid credentials."), false
	}
	return k, answer{}, true
}

// wireKey is k as Deepgram sends it; the secret only when withSecret.
func wireKey(k *keyRecord, withSecret bool) keyJSON {
	j := keyJSON{
		APIKeyID: k.id,
		Comment:  k.comment,
		Scopes:   append([]string(nil), k.scopes...),
		Tags:     append([]string(nil), k.tags...),
		Created:  k.created.UTC().Format(time.RFC3339Nano),
	}
	if withSecret {
		j.Key = k.secret
	}
	if !k.expires.IsZero() {
		j.ExpirationDate = k.expires.UTC().Format(time.RFC3339Nano)
	}
	return j
}

func (s *Server) list(c *call) answer {
	status := c.r.URL.Query().Get("status")
	if status != "" && status != "active" && status != "expired" {
		return c.fail(http.StatusBadRequest, "BAD_REQUEST", `status must be "active" or "expired"`)
	}
	now := s.now()
	out := struct {
		APIKeys []memberKeyJSON `json:"api_keys"`
	}{APIKeys: []memberKeyJSON{}}
	for _, k := range s.keys {
		if k.deleted() || (status == "active" && k.expired(now)) || (status == "expired" && !k.expired(now)) {
			continue
		}
		out.APIKeys = append(out.APIKeys, memberKeyJSON{Member: s.member, APIKey: wireKey(k, false)})
	}
	return answer{status: http.StatusOK, body: out}
}

// decodeJSON decodes body into v, refusing trailing data.
func decodeJSON(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// MaxCommentLen is the longest key comment the fake accepts, in UTF-8
// bytes. Deepgram documents no bound on comments; the fake picks a strict
// one, twice the documented 128-character tag limit, so that code which
// writes unbounded text into a comment (a user ID of any length, a path, an
// error) finds out in a test rather than in production. The lease
// package's longest comment is 230 bytes.
const MaxCommentLen = 256

// maxTTLSeconds keeps expiry times representable; Deepgram documents no
// bound.
const maxTTLSeconds = 100 * 365 * 24 * 3600

func (s *Server) create(c *call, caller rights) answer {
	var req struct {
		Comment        string   `json:"comment"`
		Scopes         []string `json:"scopes"`
		Tags           []string `json:"tags"`
		ExpirationDate *string  `json:"expiration_date"`
		TTL            *int64   `json:"time_to_live_in_seconds"`
	}
	if err := decodeJSON(c.body, &req); err != nil {
		return c.fail(http.StatusBadRequest, "BAD_REQUEST", "Invalid JSON: "+err.Error())
	}
	bad := func(msg string) answer { return c.fail(http.StatusBadRequest, "BAD_REQUEST", msg) }
	if len(req.Scopes) == 0 {
		return bad("scopes must be a non-empty array")
	}
	for _, sc := range req.Scopes {
		if !knownScope(sc) {
			return bad(fmt.Sprintf("unknown scope %q", sc))
		}
	}
	for i, tag := range req.Tags {
		if p := dgtag.Problem(tag); p != "" {
			return bad(fmt.Sprintf("tags[%d] %s", i, p))
		}
	}
	if len(req.Comment) > MaxCommentLen {
		return bad(fmt.Sprintf("comment is %d bytes long; the fake limits comments to %d bytes", len(req.Comment), MaxCommentLen))
	}
	now := s.now()
	var expires time.Time
	switch {
	case req.TTL != nil && req.ExpirationDate != nil:
		return bad("set at most one of time_to_live_in_seconds and expiration_date")
	case req.TTL != nil:
		if *req.TTL <= 0 || *req.TTL > maxTTLSeconds {
			return bad(fmt.Sprintf("time_to_live_in_seconds must be 1..%d", maxTTLSeconds))
		}
		expires = now.Add(time.Duration(*req.TTL) * time.Second)
	case req.ExpirationDate != nil:
		t, err := time.Parse(time.RFC3339Nano, *req.ExpirationDate)
		if err != nil {
			return bad("expiration_date must be an RFC 3339 date-time with a time zone")
		}
		if !t.After(now) {
			return bad("expiration_date must be in the future")
		}
		if t.Sub(now) > maxTTLSeconds*time.Second {
			return bad("expiration_date is too far in the future")
		}
		expires = t
	}
	if missing, ok := caller.covers(req.Scopes); !ok {
		return c.fail(http.StatusForbidden, "INSUFFICIENT_PERMISSIONS",
			fmt.Sprintf("a key cannot be given rights its creator lacks (%s)", missing))
	}
	k := s.addKey(newSecret(), req.Comment, req.Scopes, req.Tags, expires)
	return answer{status: http.StatusOK, body: wireKey(k, true)}
}

// Grant token TTL bounds and default (seconds).
const (
	minGrantTTL     = 1
	maxGrantTTL     = 3600
	defaultGrantTTL = 30
)

// grant mints a grant token. ttl_seconds is a JSON number (Deepgram's
// reference types it double, https://developers.deepgram.com/reference/auth/tokens/grant):
// any number from 1 to 3600 is taken, and a fraction is dropped, so that
// the token never outlives what was asked and expires_in says exactly how
// long it lives.
func (s *Server) grant(c *call, caller *keyRecord) answer {
	ttlSeconds := float64(defaultGrantTTL)
	if len(bytes.TrimSpace(c.body)) > 0 {
		var req struct {
			TTLSeconds *float64 `json:"ttl_seconds"`
		}
		if err := decodeJSON(c.body, &req); err != nil {
			return c.fail(http.StatusBadRequest, "BAD_REQUEST", "Invalid JSON: "+err.Error())
		}
		if req.TTLSeconds != nil {
			ttlSeconds = *req.TTLSeconds
		}
	}
	if !(ttlSeconds >= minGrantTTL && ttlSeconds <= maxGrantTTL) {
		return c.fail(http.StatusBadRequest, "BAD_REQUEST", fmt.Sprintf("ttl_seconds must be a number from %d to %d", minGrantTTL, maxGrantTTL))
	}
	ttl := int64(ttlSeconds) // whole seconds, rounded down
	now := s.now()
	jti := fakelisten.NewUUID()
	s.grants[jti] = caller.id // its streams count against the key that minted it
	token := signJWT(s.jwtSecret, grantClaims{
		Sub:   s.member.MemberID,
		JTI:   jti,
		Iat:   now.Unix(),
		Exp:   now.Unix() + ttl,
		Scope: "usage:write",
	})
	return answer{status: http.StatusOK, body: struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
	}{token, ttl}}
}
