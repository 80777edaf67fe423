package lease

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/dglease/dglease/keys"
)

// ErrDenied is matched (errors.Is) by every refusal of Acquire: the
// error is then a *DeniedError that says which limit refused and when to
// retry.
var ErrDenied = errors.New("lease: denied")

// Limit names what refused an Acquire.
type Limit int

// The limits that can refuse an Acquire.
const (
	// LimitRate is the per-user rate limit (WithRateLimit).
	LimitRate Limit = iota + 1
	// LimitUserCap is the cap on one user's live leases (WithMaxLeases).
	LimitUserCap
	// LimitTotalCap is the cap on the Manager's live leases
	// (WithMaxLeases).
	LimitTotalCap
	// LimitDeepgram is Deepgram's own rate limit: it answered the create
	// (or grant) with 429 Too Many Requests.
	LimitDeepgram
	// LimitKeys is the cap on keys in existence (WithMaxKeys): live
	// leases and creates in flight, keys the deleter has not deleted yet,
	// and keys it gave up on that still work, each a working credential
	// until deleted or expired.
	LimitKeys
)

// String names the limit, e.g. "per-user rate limit".
func (l Limit) String() string {
	switch l {
	case LimitRate:
		return "per-user rate limit"
	case LimitUserCap:
		return "per-user lease cap"
	case LimitTotalCap:
		return "total lease cap"
	case LimitDeepgram:
		return "Deepgram's rate limit"
	case LimitKeys:
		return "cap on keys in existence"
	}
	return fmt.Sprintf("Limit(%d)", int(l))
}

// deepgramRetryDefault is DeniedError.RetryAfter for a 429 from Deepgram
// that came without a Retry-After header.
const deepgramRetryDefault = time.Second

// DeniedError is how Acquire reports a refusal, by one of the Manager's
// limits or by Deepgram; it matches [ErrDenied] under errors.Is. A refusal
// by the Manager's limits is decided before any network call and creates
// nothing. A refusal by Deepgram wraps its *keys.APIError (errors.As
// reaches it).
type DeniedError struct {
	// User is the user that was refused.
	User string
	// Limit is what refused.
	Limit Limit
	// RetryAfter is how long to wait before trying again, always positive:
	// for the rate limit, until the user's next token; for the caps, the
	// lease TTL, an upper bound on when a blocking lease ends by itself
	// (one may end sooner); for the cap on keys in existence, 1s; for
	// Deepgram, its Retry-After header, or 1s when it sent none.
	RetryAfter time.Duration
	// Err is Deepgram's answer for LimitDeepgram, else nil.
	Err error
}

// Error says which limit refused which user and when to retry.
func (e *DeniedError) Error() string {
	msg := fmt.Sprintf("lease: denied: user %q is over the %s; retry after %s", e.User, e.Limit, e.RetryAfter.Round(time.Millisecond))
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Is matches ErrDenied.
func (e *DeniedError) Is(target error) bool { return target == ErrDenied }

// Unwrap returns Deepgram's answer, if Deepgram refused.
func (e *DeniedError) Unwrap() error { return e.Err }

// deniedByDeepgram returns a *DeniedError when err is Deepgram's 429.
func deniedByDeepgram(user string, err error) *DeniedError {
	var apiErr *keys.APIError
	if !errors.As(err, &apiErr) || !errors.Is(apiErr, keys.ErrRateLimited) {
		return nil
	}
	wait := apiErr.RetryAfter
	if wait <= 0 {
		wait = deepgramRetryDefault
	}
	return &DeniedError{User: user, Limit: LimitDeepgram, RetryAfter: wait, Err: apiErr}
}

// userState is one user's usage counters. Guarded by Manager.mu, except
// marks (atomic) and m and name, which never change.
type userState struct {
	m    *Manager // the Manager this state is kept by (its records reach it here)
	name string
	// marks is what a key's marker says of the user, made by the first
	// key leased to the user (apiKeys.issue), outside Manager.mu; a
	// Manager of grant tokens never makes it.
	marks atomic.Pointer[userMarkers]
	usage Usage
	live  int // leases live plus Acquire calls admitted and not finished
	last  time.Time
	idle  links[userState] // in Manager.idle
}

// userLocked returns user's counters, creating them (and forgetting a few
// users idle for userRetention) when they are new.
func (m *Manager) userLocked(user string, now time.Time) *userState {
	us := m.users[user]
	if us == nil {
		m.idle.evict(func(o *userState) bool { return now.Sub(o.last) > userRetention },
			func(o *userState) bool { return o.live == 0 },
			func(o *userState) { delete(m.users, o.name) })
		us = &userState{m: m, name: user}
		m.users[user] = us
	}
	us.last = now
	m.idle.touch(us)
	return us
}

func (us *userState) link() *links[userState] { return &us.idle }

// userMarkers is what a key's marker says of a user (userMarks).
type userMarkers struct{ commentField, tag string }

// markers returns us's marks, made on first use. Two first uses at once
// both compute them, with the same result.
func (us *userState) markers() *userMarkers {
	if mk := us.marks.Load(); mk != nil {
		return mk
	}
	mk := &userMarkers{}
	mk.commentField, mk.tag = userMarks(us.name)
	us.marks.Store(mk)
	return mk
}
