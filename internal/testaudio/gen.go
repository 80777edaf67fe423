//go:build ignore

// gen writes testdata/hello.raw: two seconds of 16 kHz mono linear16 PCM,
// a 440 Hz tone with short fades, so the file is deterministic.
//
// Run with: go generate ./internal/testaudio
package main

import (
	"encoding/binary"
	"log"
	"math"
	"os"
)

func main() {
	const (
		rate    = 16000
		seconds = 2
		freq    = 440.0
		amp     = 0.3 * math.MaxInt16
		fade    = rate / 100 // 10 ms
	)
	n := rate * seconds
	buf := make([]byte, 0, 2*n)
	for i := range n {
		gain := 1.0
		if i < fade {
			gain = float64(i) / fade
		} else if n-1-i < fade {
			gain = float64(n-1-i) / fade
		}
		v := int16(math.Round(amp * gain * math.Sin(2*math.Pi*freq*float64(i)/rate)))
		buf = binary.LittleEndian.AppendUint16(buf, uint16(v))
	}
	if err := os.WriteFile("testdata/hello.raw", buf, 0o644); err != nil {
		log.Fatal(err)
	}
}
