package metrics

import (
	"math"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/logitpair/logitpair/pkg/objective"
	"github.com/logitpair/logitpair/pkg/worker"
)

// LocalSlot is the worker slot a single-process run's report series carry
// (the run is one worker).
const LocalSlot = 0

// Local holds the series of a single-process run (`logitpair train
// --http-listen`), named as the cluster's so that the same queries and
// dashboards read both: step and run_steps (the coordinator's),
// steps_committed_total, the per-slot loss terms and batch accuracies of
// slot 0 (reported_step, loss, …, loss_nan_total), and two of its own,
// learning_rate and samples_per_second.
type Local struct {
	reports        *reportSeries
	step, runSteps prometheus.Gauge
	lr, samples    prometheus.Gauge
	steps          prometheus.Counter
}

// NewLocal registers a single-process run's series on reg; the step starts
// at step (a resumed run's), the run's length is steps.
func NewLocal(reg prometheus.Registerer, step, steps int64) (*Local, error) {
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help})
	}
	m := &Local{
		step:     g("step", "The global step: the next step to commit (= steps in the committed history)."),
		runSteps: g("run_steps", "The run's length in steps (--steps)."),
		lr:       g("learning_rate", "The learning rate of the last step of the last log interval (the schedule's times the sentinel's scale)."),
		samples:  g("samples_per_second", "Training examples per second since the process started, at the last log interval."),
		steps: prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "steps_committed_total",
			Help: "Steps committed (applied by every shard); steps redone after a rollback count again."}),
	}
	var err error
	if m.reports, err = newReportSeries(reg); err != nil {
		return nil, err
	}
	if err := register(reg, m.step, m.runSteps, m.lr, m.samples, m.steps); err != nil {
		return nil, err
	}
	m.step.Set(float64(step))
	m.runSteps.Set(float64(steps))
	m.lr.Set(math.NaN())
	m.samples.Set(math.NaN())
	m.reports.nan.WithLabelValues("0") // at 0 from the start: a NaN is an increase
	return m, nil
}

// Step records step's terms (Trainer.OnStep): the step is done.
func (m *Local) Step(step int64, t objective.Terms) {
	m.reports.observe(step, LocalSlot, t, worker.Timing{})
	m.step.Set(float64(step + 1))
	m.steps.Inc()
}

// SetStep sets the step (after a rollback, the step the run went back to).
func (m *Local) SetStep(step int64) { m.step.Set(float64(step)) }

// Interval records a log interval's learning rate and throughput (NaN:
// unknown).
func (m *Local) Interval(lr, samplesPerSec float64) {
	m.lr.Set(lr)
	m.samples.Set(samplesPerSec)
}
