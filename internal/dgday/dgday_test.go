package dgday_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/dglease/dglease/internal/dgday"
)

func TestOf(t *testing.T) {
	tokyo := time.FixedZone("JST", 9*3600)
	// 08:30 in Tokyo on the 2nd is 23:30 UTC on the 1st.
	got := dgday.Of(time.Date(2026, 3, 2, 8, 30, 0, 0, tokyo))
	assert.Equal(t, time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), got)
	assert.Equal(t, "2026-03-01", got.Format(dgday.Format))
	assert.Equal(t, got, dgday.Of(got), "a day's start is its own day")
}
