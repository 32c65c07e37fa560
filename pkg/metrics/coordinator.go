package metrics

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/logitpair/logitpair/pkg/coordinator"
	"github.com/logitpair/logitpair/pkg/objective"
	"github.com/logitpair/logitpair/pkg/worker"
)

// Coordinator holds the coordinator's series. Its state gauges read a status
// source at scrape time (Attach); commits (Committed), checkpoints
// (CheckpointStore) and worker reports (Report) are pushed in.
type Coordinator struct {
	reports        *reportSeries
	reportsTotal   *prometheus.CounterVec
	stepDuration   prometheus.Histogram
	stepsCommitted prometheus.Counter
	runSteps       prometheus.Gauge
	now            func() time.Time

	mu         sync.Mutex
	status     func() coordinator.Status
	haveCommit bool
	lastStep   int64
	lastCommit time.Time
	ckptTime   time.Time
}

// NewCoordinator registers the coordinator's series on reg. Until Attach,
// the state gauges read a zero Status; the checkpoint age counts from now
// until SetCheckpointTime or a checkpoint says otherwise.
func NewCoordinator(reg prometheus.Registerer) (*Coordinator, error) {
	return newCoordinator(reg, time.Now)
}

func newCoordinator(reg prometheus.Registerer, now func() time.Time) (*Coordinator, error) {
	m := &Coordinator{now: now, ckptTime: now(), status: func() coordinator.Status { return coordinator.Status{} }}
	var err error
	if m.reports, err = newReportSeries(reg); err != nil {
		return nil, err
	}
	st := func(name, help string, v func(coordinator.Status) float64) prometheus.GaugeFunc {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help},
			func() float64 { return v(m.snapshot()) })
	}
	dropped := func(reason string, v func(coordinator.Status) int64) prometheus.CounterFunc {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: Namespace, Name: "coordinator_reports_dropped_total",
			Help:        "Worker reports that did not make their step: backup (the step was decided without it) or stale (an older step).",
			ConstLabels: prometheus.Labels{"reason": reason}}, func() float64 { return float64(v(m.snapshot())) })
	}
	m.reportsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "coordinator_reports_total",
		Help: "Step reports the coordinator processed, per worker slot (accepted into the step or not)."}, []string{"slot"})
	m.stepDuration = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: "step_duration_seconds",
		Help: "Time between consecutive step commits (a step applied by every shard).", Buckets: DurationBuckets})
	m.stepsCommitted = prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "steps_committed_total",
		Help: "Steps committed (applied by every shard); steps redone after a rollback count again."})
	m.runSteps = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "run_steps",
		Help: "The run's length in steps (--steps)."})
	err = register(reg,
		st("step", "The global step: the next step to commit (= steps in the committed history).", func(s coordinator.Status) float64 { return float64(s.Step) }),
		st("generation", "The coordinator's generation (bumped by every rollback).", func(s coordinator.Status) float64 { return float64(s.Generation) }),
		st("live_workers", "Live workers: slots a worker joined and that were not counted gone since (0 before any worker joined).", func(s coordinator.Status) float64 { return float64(s.LiveWorkers) }),
		st("required_workers", "Gradients that make a step (N = W − b, or the live count with --elastic).", func(s coordinator.Status) float64 { return float64(s.Required) }),
		st("paused", "1 while the cluster is paused (too few live workers, or shards that cannot apply).", func(s coordinator.Status) float64 { return boolFloat(s.Paused) }),
		st("run_done", "1 once the global step reached the run's length.", func(s coordinator.Status) float64 { return boolFloat(s.Done) }),
		st("last_checkpoint_step", "Step of the newest consistent checkpoint.", func(s coordinator.Status) float64 { return float64(s.LastCheckpoint) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Name: "checkpoint_age_seconds",
			Help: "Seconds since the newest consistent checkpoint was written (since the coordinator started when it has none)."},
			m.checkpointAge),
		dropped("backup", func(s coordinator.Status) int64 { return s.DroppedBackup }),
		dropped("stale", func(s coordinator.Status) int64 { return s.StaleReports }),
		m.reportsTotal, m.stepDuration, m.stepsCommitted, m.runSteps)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// Attach makes c the source of the state gauges.
func (m *Coordinator) Attach(c *coordinator.Coordinator) { m.SetStatusSource(c.Status) }

// SetStatusSource makes fn the source of the state gauges (Attach, tests).
func (m *Coordinator) SetStatusSource(fn func() coordinator.Status) {
	m.mu.Lock()
	m.status = fn
	m.mu.Unlock()
}

func (m *Coordinator) snapshot() coordinator.Status {
	m.mu.Lock()
	fn := m.status
	m.mu.Unlock()
	return fn()
}

// SetRunSteps records the run's length.
func (m *Coordinator) SetRunSteps(n int64) { m.runSteps.Set(float64(n)) }

// Committed records that step was applied by every shard: it observes the
// time since the previous step's commit (none for the first commit this
// process saw, or after a rollback).
func (m *Coordinator) Committed(step int64) {
	now := m.now()
	m.mu.Lock()
	if m.haveCommit && step == m.lastStep+1 {
		m.stepDuration.Observe(now.Sub(m.lastCommit).Seconds())
	}
	m.haveCommit, m.lastStep, m.lastCommit = true, step, now
	m.mu.Unlock()
	m.stepsCommitted.Inc()
}

// Report records a worker's step report (rpc.WithOnReport).
func (m *Coordinator) Report(step int64, slot int, terms objective.Terms, t worker.Timing) {
	m.reportsTotal.WithLabelValues(strconv.Itoa(slot)).Inc()
	m.reports.observe(step, slot, terms, t)
}

// SetCheckpointTime sets when the newest consistent checkpoint was written
// (at start-up, from its file's modification time).
func (m *Coordinator) SetCheckpointTime(t time.Time) {
	m.mu.Lock()
	m.ckptTime = t
	m.mu.Unlock()
}

func (m *Coordinator) checkpointAge() float64 {
	m.mu.Lock()
	t := m.ckptTime
	m.mu.Unlock()
	return max(m.now().Sub(t).Seconds(), 0)
}

// CheckpointStore wraps the coordinator's checkpoint store: every recorded
// consistent checkpoint resets the checkpoint age.
func (m *Coordinator) CheckpointStore(inner coordinator.CheckpointStore) coordinator.CheckpointStore {
	return checkpointStore{inner: inner, m: m}
}

type checkpointStore struct {
	inner coordinator.CheckpointStore
	m     *Coordinator
}

func (s checkpointStore) LastCheckpoint() (int64, bool, error) { return s.inner.LastCheckpoint() }

func (s checkpointStore) Held() ([]int64, error) { return s.inner.Held() }

func (s checkpointStore) SetLastCheckpoint(step int64) error {
	if err := s.inner.SetLastCheckpoint(step); err != nil {
		return err
	}
	s.m.SetCheckpointTime(s.m.now())
	return nil
}
