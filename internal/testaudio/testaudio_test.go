package testaudio_test

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dglease/dglease/internal/testaudio"
)

func TestPCMIsTwoSecondsOfLinear16(t *testing.T) {
	pcm := testaudio.PCM()
	const bytesPerSecond = testaudio.SampleRate * testaudio.Channels * 2
	require.Len(t, pcm, 2*bytesPerSecond)

	var peak int16
	for i := 0; i < len(pcm); i += 2 {
		peak = max(peak, int16(binary.LittleEndian.Uint16(pcm[i:])))
	}
	assert.Greater(t, peak, int16(1000), "the clip is not silent")
}

func TestPCMReturnsACopy(t *testing.T) {
	a := testaudio.PCM()
	a[0], a[1] = 0xff, 0x7f
	assert.NotEqual(t, a[:2], testaudio.PCM()[:2])
}
