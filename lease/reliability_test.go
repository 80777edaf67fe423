package lease_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// reliabilityPath is RELIABILITY.md at the module root. The proof tests
// generate its sections, each between "<!-- begin:name -->" and
// "<!-- end:name -->".
const reliabilityPath = "../RELIABILITY.md"

func reliabilityMarkers(name string) (begin, end string) {
	return "<!-- begin:" + name + " -->", "<!-- end:" + name + " -->"
}

// reliabilitySection returns the body of section name in doc, without the
// line breaks around it, as writeReliabilitySection wrote it.
func reliabilitySection(doc, name string) (string, bool) {
	begin, end := reliabilityMarkers(name)
	_, rest, ok := strings.Cut(doc, begin)
	if !ok {
		return "", false
	}
	body, _, ok := strings.Cut(rest, end)
	return strings.TrimSpace(body), ok
}

// writeReliabilitySection replaces the text between "<!-- begin:name -->" and
// "<!-- end:name -->" in RELIABILITY.md with body, keeping everything
// outside the markers byte for byte. A missing file is created with a
// "# Reliability" title; missing markers are appended.
func writeReliabilitySection(t *testing.T, name, body string) {
	t.Helper()
	begin, end := reliabilityMarkers(name)
	old, err := os.ReadFile(reliabilityPath)
	if errors.Is(err, fs.ErrNotExist) {
		old, err = []byte("# Reliability\n"), nil
	}
	require.NoError(t, err)
	s := string(old)
	block := begin + "\n" + strings.TrimSpace(body) + "\n" + end
	i, j := strings.Index(s, begin), strings.Index(s, end)
	switch {
	case i < 0 && j < 0:
		s = strings.TrimRight(s, "\n") + "\n\n" + block + "\n"
	case i >= 0 && j > i && strings.Count(s, begin) == 1 && strings.Count(s, end) == 1:
		s = s[:i] + block + s[j+len(end):]
	default:
		t.Fatalf("%s: markers %q and %q are malformed; fix them by hand", reliabilityPath, begin, end)
	}
	// Write to a temporary file and rename it, so that a reader never
	// sees half a file.
	tmp, err := os.CreateTemp(filepath.Dir(reliabilityPath), ".RELIABILITY-*.md")
	require.NoError(t, err)
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(s)
	require.NoError(t, errors.Join(err, tmp.Chmod(0o644), tmp.Close()))
	require.NoError(t, os.Rename(tmp.Name(), reliabilityPath))
	t.Logf("wrote the %s section of %s", name, reliabilityPath)
}
