package leaseotel_test

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"
	"go.uber.org/goleak"

	"github.com/dglease/dglease/internal/testenv"
	"github.com/dglease/dglease/keys/keystest"
	"github.com/dglease/dglease/lease"
	"github.com/dglease/dglease/lease/leaseotel"
)

func TestMain(m *testing.M) {
	testenv.ClearDeepgramProcess()
	goleak.VerifyTestMain(m)
}

// env is a Manager on an in-memory fake whose hooks and gauges record on
// a MeterProvider read by hand.
type env struct {
	t      *testing.T
	srv    *keystest.Server
	m      *lease.Manager
	reader *sdkmetric.ManualReader
}

func newEnv(t *testing.T, opts ...lease.Option) *env {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	hooks, err := leaseotel.Hooks(mp)
	require.NoError(t, err)
	srv := keystest.NewServer(t, keystest.WithoutListener())
	m, err := lease.New(srv.Client(), append([]lease.Option{lease.WithRateLimit(0, 1), lease.WithHooks(hooks)}, opts...)...)
	require.NoError(t, err)
	reg, err := leaseotel.Observe(m, mp)
	require.NoError(t, err)
	t.Cleanup(func() {
		assert.NoError(t, reg.Unregister())
		_ = m.Close(context.Background())
	})
	return &env{t: t, srv: srv, m: m, reader: reader}
}

// collect returns the metrics recorded so far, by name.
func (e *env) collect() map[string]metricdata.Metrics {
	e.t.Helper()
	return collect(e.t, e.reader)
}

// collect returns the metrics reader has recorded so far, by name.
func collect(t *testing.T, reader *sdkmetric.ManualReader) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		require.Equal(t, leaseotel.ScopeName, sm.Scope.Name)
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

// point is one expected data point of a counter or gauge.
type point struct {
	value int64
	attrs []attribute.KeyValue
}

func sum(points ...point) metricdata.Sum[int64] {
	s := metricdata.Sum[int64]{Temporality: metricdata.CumulativeTemporality, IsMonotonic: true}
	for _, p := range points {
		s.DataPoints = append(s.DataPoints, metricdata.DataPoint[int64]{Attributes: attribute.NewSet(p.attrs...), Value: p.value})
	}
	return s
}

func gauge(v int64) metricdata.Gauge[int64] {
	return metricdata.Gauge[int64]{DataPoints: []metricdata.DataPoint[int64]{{Attributes: attribute.NewSet(), Value: v}}}
}

// counter asserts the counter name has exactly points.
func (e *env) counter(got map[string]metricdata.Metrics, name, unit string, points ...point) {
	e.t.Helper()
	m, ok := got[name]
	if !assert.True(e.t, ok, "no metric %s", name) {
		return
	}
	assert.Equal(e.t, unit, m.Unit, name)
	metricdatatest.AssertAggregationsEqual(e.t, sum(points...), m.Data, metricdatatest.IgnoreTimestamp())
}

// histogram asserts the count and sum (in seconds) of the histogram
// name's data point with attrs.
func (e *env) histogram(got map[string]metricdata.Metrics, name string, count uint64, total float64, attrs ...attribute.KeyValue) {
	e.t.Helper()
	m, ok := got[name]
	if !assert.True(e.t, ok, "no metric %s", name) {
		return
	}
	assert.Equal(e.t, "s", m.Unit, name)
	h, ok := m.Data.(metricdata.Histogram[float64])
	if !assert.True(e.t, ok, "%s is a %T", name, m.Data) {
		return
	}
	want := attribute.NewSet(attrs...)
	for _, dp := range h.DataPoints {
		if dp.Attributes.Equals(&want) {
			assert.Equal(e.t, count, dp.Count, "%s %v count", name, attrs)
			assert.InDelta(e.t, total, dp.Sum, 1e-9, "%s %v sum", name, attrs)
			return
		}
	}
	e.t.Errorf("%s has no data point with %v", name, attrs)
}

var (
	success = attribute.String("dglease.outcome", "success")
	failed  = attribute.String("dglease.outcome", "error")
	refused = attribute.String("dglease.outcome", "refused")
)

func reason(r string) attribute.KeyValue { return attribute.String("dglease.reason", r) }
func limit(l string) attribute.KeyValue  { return attribute.String("dglease.limit", l) }
func failure(op, outcome string) []attribute.KeyValue {
	return []attribute.KeyValue{attribute.String("dglease.operation", op), attribute.String("dglease.outcome", outcome)}
}

// A lease acquired, held 2 s and released: acquired, ended (released),
// lifetime, key deleted, create and delete durations, and the gauges.
func TestRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t)
		e.srv.SetLatency(keystest.OpCreate, 20*time.Millisecond)
		e.srv.SetLatency(keystest.OpDelete, 30*time.Millisecond)
		l, err := e.m.Acquire(context.Background(), "alice")
		require.NoError(t, err)
		got := e.collect()
		e.counter(got, "dglease.lease.acquired", "{lease}", point{1, nil})
		metricdatatest.AssertAggregationsEqual(t, gauge(1), got["dglease.lease.live"].Data, metricdatatest.IgnoreTimestamp())
		e.histogram(got, "dglease.key.create.duration", 1, 0.020, success)

		time.Sleep(2 * time.Second)
		l.Release()
		got = e.collect()
		e.counter(got, "dglease.lease.ended", "{lease}", point{1, []attribute.KeyValue{reason("released")}})
		e.histogram(got, "dglease.lease.lifetime", 1, 2, reason("released"))
		metricdatatest.AssertAggregationsEqual(t, gauge(0), got["dglease.lease.live"].Data, metricdatatest.IgnoreTimestamp())
		metricdatatest.AssertAggregationsEqual(t, gauge(1), got["dglease.key.delete.pending"].Data, metricdatatest.IgnoreTimestamp())

		require.NoError(t, e.m.Flush(context.Background()))
		got = e.collect()
		e.counter(got, "dglease.key.deleted", "{key}", point{1, nil})
		e.histogram(got, "dglease.key.delete.duration", 1, 0.030, success)
		metricdatatest.AssertAggregationsEqual(t, gauge(0), got["dglease.key.delete.pending"].Data, metricdatatest.IgnoreTimestamp())
		_, ok := got["dglease.failures"]
		assert.False(t, ok, "no failure recorded")
	})
}

// A dropped lease: leaked, and ended as leaked.
func TestLeak(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, lease.WithTTL(time.Hour))
		func() {
			_, err := e.m.Acquire(context.Background(), "careless")
			require.NoError(t, err)
		}()
		// The collector finds the dropped lease when the runtime chooses;
		// the Manager ends it within a second of fake time after that.
		for i := 0; i < 200 && e.m.Stats().Leaked == 0; i++ {
			runtime.GC()
			runtime.Gosched()
			time.Sleep(time.Second)
			synctest.Wait()
		}
		require.Equal(t, uint64(1), e.m.Stats().Leaked, "the collector never found the dropped lease")
		got := e.collect()
		e.counter(got, "dglease.lease.leaked", "{lease}", point{1, nil})
		e.counter(got, "dglease.lease.ended", "{lease}", point{1, []attribute.KeyValue{reason("leaked")}})
	})
}

// Refusals by the Manager's limits and by Deepgram's 429, by limit; a
// refusal by Deepgram also records the create call's duration.
func TestRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, lease.WithMaxLeases(10, 1))
		e.srv.SetLatency(keystest.OpCreate, 10*time.Millisecond)
		e.srv.Fail(keystest.OpCreate, keystest.Fault{Status: 429, RetryAfter: 2 * time.Second})
		_, err := e.m.Acquire(context.Background(), "alice")
		require.ErrorIs(t, err, lease.ErrDenied)
		l, err := e.m.Acquire(context.Background(), "alice")
		require.NoError(t, err)
		defer l.Release()
		_, err = e.m.Acquire(context.Background(), "alice")
		require.ErrorIs(t, err, lease.ErrDenied)
		got := e.collect()
		e.counter(got, "dglease.lease.refused", "{lease}",
			point{1, []attribute.KeyValue{limit("deepgram")}},
			point{1, []attribute.KeyValue{limit("user_cap")}})
		e.histogram(got, "dglease.key.create.duration", 1, 0.010, refused)
		e.histogram(got, "dglease.key.create.duration", 1, 0.010, success)
		e.counter(got, "dglease.lease.acquired", "{lease}", point{1, nil})
	})
}

// A delete that fails until the deleter gives up: every retried failure,
// then one final; each attempt's duration; no key deleted. A create that
// fails: one final create failure.
func TestFailures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t)
		e.srv.Fail(keystest.OpCreate, keystest.Fault{Status: 500})
		_, err := e.m.Acquire(context.Background(), "alice")
		require.Error(t, err)
		l, err := e.m.Acquire(context.Background(), "alice")
		require.NoError(t, err)
		e.srv.Fail(keystest.OpDelete, keystest.Fault{Status: 503, Times: -1})
		l.Release()
		require.NoError(t, e.m.Flush(context.Background()))
		attempts := int64(e.m.Stats().DeleteAttempts)
		require.Greater(t, attempts, int64(1), "the delete was retried")
		got := e.collect()
		e.counter(got, "dglease.failures", "{failure}",
			point{1, failure("create", "final")},
			point{attempts - 1, failure("delete", "retried")},
			point{1, failure("delete", "final")})
		e.histogram(got, "dglease.key.create.duration", 1, 0, failed)
		e.histogram(got, "dglease.key.delete.duration", uint64(attempts), 0, failed)
		_, ok := got["dglease.key.deleted"]
		assert.False(t, ok, "no key deleted")
	})
}

// Close ends live leases as closed.
func TestClosed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t)
		for range 3 {
			_, err := e.m.Acquire(context.Background(), "alice")
			require.NoError(t, err)
		}
		require.NoError(t, e.m.Close(context.Background()))
		got := e.collect()
		e.counter(got, "dglease.lease.ended", "{lease}", point{3, []attribute.KeyValue{reason("closed")}})
		e.counter(got, "dglease.key.deleted", "{key}", point{3, nil})
	})
}

func TestBadInput(t *testing.T) {
	_, err := leaseotel.Hooks(nil)
	assert.ErrorContains(t, err, "leaseotel: Hooks needs a MeterProvider")
	_, err = leaseotel.Observe(nil, sdkmetric.NewMeterProvider())
	assert.ErrorContains(t, err, "leaseotel: Observe needs a Manager")
	var mp metric.MeterProvider
	_, err = leaseotel.Observe(&lease.Manager{}, mp)
	assert.ErrorContains(t, err, "MeterProvider")
}

// Every Limit the lease package names is counted under an attribute of its
// own: a limit added to lease without one here would be lost silently.
func TestEveryLimitIsCounted(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	hooks, err := leaseotel.Hooks(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	require.NoError(t, err)
	n := 0
	for l := lease.Limit(1); !strings.HasPrefix(l.String(), "Limit("); l++ {
		hooks.OnDenied(lease.Event{User: "alice", Err: &lease.DeniedError{User: "alice", Limit: l}})
		n++
	}
	require.GreaterOrEqual(t, n, 5, "the lease package names at least five limits")
	refused, ok := collect(t, reader)["dglease.lease.refused"].Data.(metricdata.Sum[int64])
	require.True(t, ok, "dglease.lease.refused is an int64 counter")
	seen := map[string]bool{}
	for _, p := range refused.DataPoints {
		v, ok := p.Attributes.Value("dglease.limit")
		require.True(t, ok)
		assert.Equal(t, int64(1), p.Value, v.AsString())
		seen[v.AsString()] = true
	}
	assert.Len(t, seen, n, "one attribute value per limit: %v", seen)
}

// A key deleted elsewhere first (another replica's ReleaseForeign) is
// counted with dglease.already_deleted, so that a sum over replicas can
// count each key once.
func TestAlreadyDeleted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t)
		l, err := e.m.Acquire(context.Background(), "alice")
		require.NoError(t, err)
		require.True(t, e.srv.RevokeKey(l.KeyID()))
		l.Release()
		require.NoError(t, e.m.Flush(context.Background()))
		got := e.collect()
		e.counter(got, "dglease.key.deleted", "{key}", point{1, []attribute.KeyValue{attribute.Bool("dglease.already_deleted", true)}})
	})
}
