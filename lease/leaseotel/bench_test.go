package leaseotel_test

import (
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/dglease/dglease/internal/stubkeys"
	"github.com/dglease/dglease/lease/leaseotel"
)

// BenchmarkMetricHooks runs Acquire+Release (and the deletion, until
// Close) alternately without hooks and with leaseotel's hooks on an SDK
// MeterProvider (a ManualReader, so the SDK aggregates every measurement),
// and reports what the metrics add, by wall and CPU time.
func BenchmarkMetricHooks(b *testing.B) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	metrics, err := leaseotel.Hooks(mp)
	if err != nil {
		b.Fatal(err)
	}
	stubkeys.CompareHooks(b, "metrics", metrics)
}
