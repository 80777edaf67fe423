package dgtag_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/dglease/dglease/internal/dgtag"
)

func TestProblem(t *testing.T) {
	for tag, want := range map[string]string{
		"":                                    "empty",
		" \t":                                 "only spaces",
		"\xff":                                "UTF-8",
		strings.Repeat("a", dgtag.MaxLen+1):   "129 bytes long",
		strings.Repeat("é", dgtag.MaxLen/2+1): "130 bytes long",
	} {
		assert.Contains(t, dgtag.Problem(tag), want, "Problem(%q)", tag)
	}
	for _, tag := range []string{"a", "dglease:user=alice", strings.Repeat("a", dgtag.MaxLen), " padded "} {
		assert.Empty(t, dgtag.Problem(tag), "Problem(%q)", tag)
	}
}
