package metrics

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/logitpair/logitpair/pkg/objective"
	"github.com/logitpair/logitpair/pkg/train"
	"github.com/logitpair/logitpair/pkg/worker"
)

// Results of a worker's step report, the values of the result label.
const (
	ResultAccepted = "accepted" // the gradient counts toward its step
	ResultLate     = "late"     // the step was decided without it (a backup) or had moved on
	ResultError    = "error"    // the report failed
)

// Worker holds one worker's series: its own loss terms and time split (the
// same series the coordinator exports for every slot), its report results,
// and its push/pull traffic per shard.
type Worker struct {
	slot                 int
	slotLabel            string
	reports              *reportSeries
	results              *prometheus.CounterVec
	pullDur, pushDur     *prometheus.HistogramVec
	pullBytes, pushBytes *prometheus.CounterVec
	errs                 *prometheus.CounterVec
}

func errShardIndex(i int) error { return fmt.Errorf("metrics: shard index must be ≥ 0, got %d", i) }

// NewWorker registers the series of the worker in slot on reg.
func NewWorker(reg prometheus.Registerer, slot int) (*Worker, error) {
	if slot < 0 {
		return nil, fmt.Errorf("metrics: worker slot must be ≥ 0, got %d", slot)
	}
	h := func(name, help string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: name, Help: help, Buckets: DurationBuckets}, []string{"slot", "shard"})
	}
	c := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, labels)
	}
	m := &Worker{
		slot: slot, slotLabel: strconv.Itoa(slot),
		results:   c("worker_reports_total", "The worker's step reports by result: accepted, late (the step was decided without it), error.", "slot", "result"),
		pullDur:   h("worker_pull_duration_seconds", "Time to pull a shard's parameters, waiting for the version included (successful pulls)."),
		pushDur:   h("worker_push_duration_seconds", "Time to push a gradient slice to a shard (successful pushes)."),
		pullBytes: c("worker_pull_bytes_total", "Parameter and buffer bytes pulled from a shard (float32 payload).", "slot", "shard"),
		pushBytes: c("worker_push_bytes_total", "Gradient and buffer bytes pushed to a shard (float32 payload).", "slot", "shard"),
		errs:      c("worker_shard_errors_total", "Pulls and pushes that failed, per shard and operation (stale pushes of backups included).", "slot", "shard", "op"),
	}
	var err error
	if m.reports, err = newReportSeries(reg); err != nil {
		return nil, err
	}
	if err := register(reg, m.results, m.pullDur, m.pushDur, m.pullBytes, m.pushBytes, m.errs); err != nil {
		return nil, err
	}
	m.reports.nan.WithLabelValues(m.slotLabel) // at 0 from the start: a NaN is an increase
	return m, nil
}

// Shard wraps shard k as the worker reaches it, measuring pulls and pushes.
func (m *Worker) Shard(k int, s worker.Shard) worker.Shard {
	sl := strconv.Itoa(k)
	return &workerShard{inner: s, m: m,
		pullDur: m.pullDur.WithLabelValues(m.slotLabel, sl), pushDur: m.pushDur.WithLabelValues(m.slotLabel, sl),
		pullBytes: m.pullBytes.WithLabelValues(m.slotLabel, sl), pushBytes: m.pushBytes.WithLabelValues(m.slotLabel, sl),
		pullErrs: m.errs.WithLabelValues(m.slotLabel, sl, "pull"), pushErrs: m.errs.WithLabelValues(m.slotLabel, sl, "push")}
}

type workerShard struct {
	inner                worker.Shard
	m                    *Worker
	pullDur, pushDur     prometheus.Observer
	pullBytes, pushBytes prometheus.Counter
	pullErrs, pushErrs   prometheus.Counter
}

func (s *workerShard) Pull(ctx context.Context, step int64) ([]float32, []float32, error) {
	t0 := time.Now()
	p, b, err := s.inner.Pull(ctx, step)
	if err != nil {
		s.pullErrs.Inc()
		return p, b, err
	}
	s.pullDur.Observe(time.Since(t0).Seconds())
	s.pullBytes.Add(float64(4 * (len(p) + len(b))))
	return p, b, nil
}

func (s *workerShard) Push(ctx context.Context, step int64, w int, grad, bufs []float32) error {
	t0 := time.Now()
	if err := s.inner.Push(ctx, step, w, grad, bufs); err != nil {
		s.pushErrs.Inc()
		return err
	}
	s.pushDur.Observe(time.Since(t0).Seconds())
	s.pushBytes.Add(float64(4 * (len(grad) + len(bufs))))
	return nil
}

// Coordinator wraps the coordinator as the worker reaches it: every report
// records the worker's loss terms, time split and the report's result.
func (m *Worker) Coordinator(c worker.Coordinator) worker.Coordinator {
	return workerCoord{inner: c, m: m}
}

type workerCoord struct {
	inner worker.Coordinator
	m     *Worker
}

func (c workerCoord) Report(ctx context.Context, step int64, slot int, terms objective.Terms, t worker.Timing) (bool, worker.StepState, error) {
	c.m.reports.observe(step, slot, terms, t)
	ok, st, err := c.inner.Report(ctx, step, slot, terms, t)
	r := ResultAccepted
	switch {
	case err != nil:
		r = ResultError
	case !ok:
		r = ResultLate
	}
	c.m.results.WithLabelValues(c.m.slotLabel, r).Inc()
	return ok, st, err
}

func (c workerCoord) WaitStep(ctx context.Context, step, gen int64) (worker.StepState, error) {
	return c.inner.WaitStep(ctx, step, gen)
}

// RunError inspects the error the worker stopped with: a non-finite loss
// (train.NonFiniteError, which the worker never reports) counts in
// loss_nan_total, and RunError says so.
func (m *Worker) RunError(err error) bool {
	var nf *train.NonFiniteError
	if !errors.As(err, &nf) {
		return false
	}
	m.reports.countNaN(m.slot)
	return true
}
