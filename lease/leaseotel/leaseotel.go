// Package leaseotel records the lease lifecycle as OpenTelemetry metrics:
// credentials issued and refused (and by which limit), how leases end,
// leaks, create and delete failures, keys deleted, create and delete
// latency, lease lifetime, and the gauges of live leases and pending
// deletions.
//
//	metrics, err := leaseotel.Hooks(provider) // any metric.MeterProvider
//	if err != nil { ... }
//	leases, err := lease.New(client, lease.WithHooks(lease.LogHooks(logger), metrics))
//	if err != nil { ... }
//	gauges, err := leaseotel.Observe(leases, provider)
//	if err != nil { ... }
//	defer gauges.Unregister()
//
// It uses the OpenTelemetry metric API only: bring your own SDK and
// exporter (examples/browser serves them in the Prometheus text format).
//
// # Instruments
//
// All are created on the meter named [ScopeName]:
//
//	dglease.lease.acquired       counter    {lease}    leases issued
//	dglease.lease.refused        counter    {lease}    refusals; dglease.limit: rate, user_cap, total_cap, keys_cap, deepgram
//	dglease.lease.ended          counter    {lease}    leases ended; dglease.reason: released, context, expired, leaked, closed
//	dglease.lease.leaked         counter    {lease}    leases dropped without Release (a caller bug)
//	dglease.lease.lifetime       histogram  s          how long leases lived; dglease.reason
//	dglease.failures             counter    {failure}  failed calls; dglease.operation: create, delete, sweep, limit;
//	                                                    dglease.outcome: final (given up) or retried
//	dglease.key.deleted          counter    {key}      keys deleted (dglease.already_deleted=true: found already gone)
//	dglease.key.create.duration  histogram  s          each create or grant call; dglease.outcome: success, refused, error
//	dglease.key.delete.duration  histogram  s          each delete attempt; dglease.outcome: success, error
//	dglease.lease.live           gauge      {lease}    live leases (Observe)
//	dglease.key.delete.pending   gauge      {key}      keys queued, being deleted or waiting to retry (Observe)
//
// Attributes stay low-cardinality on purpose: never a user ID, key ID or
// lease ID. Each distinct attribute set is a time series that the SDK keeps
// in memory and the metrics backend stores and bills; one per user or per
// credential would grow without bound with traffic (and a user ID can be
// personal data). Per-user figures belong in hooks of your own, in logs
// (LogHooks) or in Manager.Usage.
package leaseotel

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/dglease/dglease/lease"
)

// ScopeName is the instrumentation scope (meter name) of every instrument.
const ScopeName = "github.com/dglease/dglease/lease/leaseotel"

// Bucket boundaries, in seconds: calls to Deepgram (milliseconds to
// seconds), and lease lifetimes (a fraction of a second to the 1 h maximum
// TTL).
var (
	latencyBuckets  = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
	lifetimeBuckets = []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}
)

// recorder holds the instruments and, for each attribute value, its
// measurement option, built once so that recording allocates nothing.
type recorder struct {
	acquired, refused, ended, leaked, failures, deleted metric.Int64Counter
	createDur, deleteDur, lifetime                      metric.Float64Histogram

	byLimit  map[lease.Limit]metric.MeasurementOption
	byReason map[lease.Reason]metric.MeasurementOption
	failure  map[string][2]metric.MeasurementOption // by operation: {retried, final}
	success  metric.MeasurementOption
	gone     metric.MeasurementOption
	refusal  metric.MeasurementOption
	failed   metric.MeasurementOption
}

func attrs(kv ...attribute.KeyValue) metric.MeasurementOption {
	return metric.WithAttributeSet(attribute.NewSet(kv...))
}

// Hooks returns hooks that record lease events on the meter [ScopeName] of
// mp. Pass them to lease.WithHooks, alone or with others. The hooks are
// safe for concurrent use and allocate nothing per event. It fails only if
// mp refuses to create an instrument.
func Hooks(mp metric.MeterProvider) (lease.Hooks, error) {
	if mp == nil {
		return lease.Hooks{}, errors.New("leaseotel: Hooks needs a MeterProvider")
	}
	m := mp.Meter(ScopeName)
	r := &recorder{}
	var errs []error
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	histogram := func(name, desc string, bounds []float64) metric.Float64Histogram {
		h, err := m.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc), metric.WithExplicitBucketBoundaries(bounds...))
		errs = append(errs, err)
		return h
	}
	r.acquired = counter("dglease.lease.acquired", "{lease}", "Leases issued.")
	r.refused = counter("dglease.lease.refused", "{lease}", "Acquire calls refused, by the limit that refused them.")
	r.ended = counter("dglease.lease.ended", "{lease}", "Leases ended, by how they ended.")
	r.leaked = counter("dglease.lease.leaked", "{lease}", "Leases dropped without Release: a caller bug; their keys are deleted all the same.")
	r.failures = counter("dglease.failures", "{failure}", "Failed create, delete and sweep calls, given up on (final) or to be retried.")
	r.deleted = counter("dglease.key.deleted", "{key}", "Keys deleted, or found already gone.")
	r.createDur = histogram("dglease.key.create.duration", "Duration of each create (or grant) call to Deepgram.", latencyBuckets)
	r.deleteDur = histogram("dglease.key.delete.duration", "Duration of each delete attempt.", latencyBuckets)
	r.lifetime = histogram("dglease.lease.lifetime", "How long leases lived, by how they ended.", lifetimeBuckets)
	if err := errors.Join(errs...); err != nil {
		return lease.Hooks{}, fmt.Errorf("leaseotel: creating instruments: %w", err)
	}

	limit := attribute.Key("dglease.limit")
	r.byLimit = map[lease.Limit]metric.MeasurementOption{
		lease.LimitRate:     attrs(limit.String("rate")),
		lease.LimitUserCap:  attrs(limit.String("user_cap")),
		lease.LimitTotalCap: attrs(limit.String("total_cap")),
		lease.LimitKeys:     attrs(limit.String("keys_cap")),
		lease.LimitDeepgram: attrs(limit.String("deepgram")),
	}
	reason := attribute.Key("dglease.reason")
	r.byReason = map[lease.Reason]metric.MeasurementOption{
		lease.ReasonReleased: attrs(reason.String("released")),
		lease.ReasonContext:  attrs(reason.String("context")),
		lease.ReasonExpired:  attrs(reason.String("expired")),
		lease.ReasonLeaked:   attrs(reason.String("leaked")),
		lease.ReasonClosed:   attrs(reason.String("closed")),
	}
	op, outcome := attribute.Key("dglease.operation"), attribute.Key("dglease.outcome")
	r.failure = map[string][2]metric.MeasurementOption{}
	for _, o := range []string{"create", "delete", "sweep", "limit"} {
		r.failure[o] = [2]metric.MeasurementOption{
			attrs(op.String(o), outcome.String("retried")),
			attrs(op.String(o), outcome.String("final")),
		}
	}
	r.success = attrs(outcome.String("success"))
	// A key another replica deleted first (lease.Manager.ReleaseForeign)
	// is counted by both: the attribute tells the second count apart.
	r.gone = attrs(attribute.Bool("dglease.already_deleted", true))
	r.refusal = attrs(outcome.String("refused"))
	r.failed = attrs(outcome.String("error"))

	return lease.Hooks{
		OnAcquire: r.onAcquire,
		OnRelease: r.onRelease,
		OnDenied:  r.onDenied,
		OnError:   r.onError,
		OnLeak:    r.onLeak,
		OnDelete:  r.onDelete,
	}, nil
}

// ctx is the context measurements are recorded with: hooks get none, and
// the lease lifecycle carries no trace to attach exemplars to.
var ctx = context.Background()

func (r *recorder) onAcquire(e lease.Event) {
	r.acquired.Add(ctx, 1)
	r.createDur.Record(ctx, e.Latency.Seconds(), r.success)
}

func (r *recorder) onRelease(e lease.Event) {
	opt, ok := r.byReason[e.Reason]
	if !ok {
		return
	}
	r.ended.Add(ctx, 1, opt)
	r.lifetime.Record(ctx, e.Lifetime.Seconds(), opt)
}

func (r *recorder) onLeak(lease.Event) { r.leaked.Add(ctx, 1) }

func (r *recorder) onDenied(e lease.Event) {
	var denied *lease.DeniedError
	if !errors.As(e.Err, &denied) {
		return
	}
	if opt, ok := r.byLimit[denied.Limit]; ok {
		r.refused.Add(ctx, 1, opt)
	}
	if denied.Limit == lease.LimitDeepgram {
		r.createDur.Record(ctx, e.Latency.Seconds(), r.refusal) // a call was made
	}
}

func (r *recorder) onError(e lease.Event) {
	opts, ok := r.failure[e.Op]
	if !ok {
		return
	}
	if e.Final {
		r.failures.Add(ctx, 1, opts[1])
	} else {
		r.failures.Add(ctx, 1, opts[0])
	}
	switch {
	case e.Op == "create":
		r.createDur.Record(ctx, e.Latency.Seconds(), r.failed)
	case e.Op == "delete" && e.Attempt > 0: // 0: Close gave up, no attempt to report
		r.deleteDur.Record(ctx, e.Latency.Seconds(), r.failed)
	}
}

func (r *recorder) onDelete(e lease.Event) {
	if e.AlreadyDeleted {
		r.deleted.Add(ctx, 1, r.gone)
	} else {
		r.deleted.Add(ctx, 1)
	}
	r.deleteDur.Record(ctx, e.Latency.Seconds(), r.success)
}

// Observe reports m's gauges, dglease.lease.live and
// dglease.key.delete.pending, on the meter [ScopeName] of mp each time a
// reader collects, until the returned registration is unregistered (do so
// before dropping m). Reading them is two short lock holds in m.
func Observe(m *lease.Manager, mp metric.MeterProvider) (metric.Registration, error) {
	if m == nil || mp == nil {
		return nil, errors.New("leaseotel: Observe needs a Manager and a MeterProvider")
	}
	meter := mp.Meter(ScopeName)
	live, err1 := meter.Int64ObservableGauge("dglease.lease.live", metric.WithUnit("{lease}"), metric.WithDescription("Live leases."))
	pending, err2 := meter.Int64ObservableGauge("dglease.key.delete.pending", metric.WithUnit("{key}"), metric.WithDescription("Keys queued, being deleted or waiting to retry."))
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("leaseotel: creating gauges: %w", err)
	}
	reg, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := m.Stats()
		o.ObserveInt64(live, int64(s.Live))
		o.ObserveInt64(pending, int64(s.DeletePending))
		return nil
	}, live, pending)
	if err != nil {
		return nil, fmt.Errorf("leaseotel: registering the gauges: %w", err)
	}
	return reg, nil
}
