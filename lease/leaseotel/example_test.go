package leaseotel_test

import (
	"context"
	"fmt"
	"log"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/dglease/dglease/keys/keystest"
	"github.com/dglease/dglease/lease"
	"github.com/dglease/dglease/lease/leaseotel"
)

// Metrics for a Manager: the hooks, combined with any others, and the
// gauges. Here a ManualReader stands in for your exporter (Prometheus,
// OTLP, ...).
func Example() {
	srv, err := keystest.Start(keystest.WithoutListener()) // a fake Deepgram
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))

	metrics, err := leaseotel.Hooks(provider)
	if err != nil {
		log.Fatal(err)
	}
	leases, err := lease.New(srv.Client(), lease.WithHooks(metrics))
	if err != nil {
		log.Fatal(err)
	}
	defer leases.Close(context.Background())
	gauges, err := leaseotel.Observe(leases, provider)
	if err != nil {
		log.Fatal(err)
	}
	defer gauges.Unregister()

	l, err := leases.Acquire(context.Background(), "user-42")
	if err != nil {
		log.Fatal(err)
	}
	l.Release()
	if err := leases.Flush(context.Background()); err != nil {
		log.Fatal(err)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		log.Fatal(err)
	}
	for _, m := range rm.ScopeMetrics[0].Metrics {
		switch data := m.Data.(type) {
		case metricdata.Sum[int64]:
			fmt.Println(m.Name, data.DataPoints[0].Value)
		case metricdata.Gauge[int64]:
			fmt.Println(m.Name, data.DataPoints[0].Value)
		case metricdata.Histogram[float64]:
			fmt.Println(m.Name, "count", data.DataPoints[0].Count)
		}
	}
	// Unordered output:
	// dglease.lease.acquired 1
	// dglease.key.create.duration count 1
	// dglease.lease.ended 1
	// dglease.lease.lifetime count 1
	// dglease.key.deleted 1
	// dglease.key.delete.duration count 1
	// dglease.lease.live 0
	// dglease.key.delete.pending 0
}
