package metrics

import (
	"math"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/logitpair/logitpair/pkg/objective"
	"github.com/logitpair/logitpair/pkg/worker"
)

// Phases of a worker's step, the values of the phase label.
const (
	PhaseAttack  = "attack"
	PhaseCompute = "compute"
	PhaseComm    = "comm"
)

// reportSeries are the per-slot series of a worker's step report: its loss
// terms and its time split. The coordinator exports them for every slot, a
// worker for its own.
type reportSeries struct {
	loss, cleanCE, advCE, pair *prometheus.GaugeVec
	cleanAcc, advAcc, norm     *prometheus.GaugeVec
	step                       *prometheus.GaugeVec
	nan                        *prometheus.CounterVec
	phase                      *prometheus.HistogramVec
}

func newReportSeries(reg prometheus.Registerer) (*reportSeries, error) {
	g := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help}, []string{"slot"})
	}
	r := &reportSeries{
		loss:     g("loss", "Total training loss of the worker slot's last reported batch (weight decay excluded)."),
		cleanCE:  g("clean_cross_entropy", "Mean cross-entropy on the clean (or noise-augmented / mixed) half of the last reported batch."),
		advCE:    g("adversarial_cross_entropy", "Mean cross-entropy on the adversarial half of the last reported batch."),
		pair:     g("pairing_loss", "Logit-pairing (or other regularization) term of the last reported batch, before its weight."),
		cleanAcc: g("clean_accuracy_ratio", "Accuracy on the clean half of the last reported training batch (0..1)."),
		advAcc:   g("adversarial_accuracy_ratio", "Accuracy on the adversarial half of the last reported training batch (0..1)."),
		norm:     g("logit_norm", "Mean L2 norm of the logits of the last reported batch."),
		step:     g("reported_step", "The step of the worker slot's last report."),
		nan: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "loss_nan_total",
			Help: "Batches whose total loss was NaN or infinite."}, []string{"slot"}),
		phase: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "worker_phase_duration_seconds",
			Help:    "Time a worker spent per step in each phase: attack (PGD), compute (objective, forward and backward), comm (pushing gradients).",
			Buckets: DurationBuckets}, []string{"slot", "phase"}),
	}
	return r, register(reg, r.loss, r.cleanCE, r.advCE, r.pair, r.cleanAcc, r.advAcc, r.norm, r.step, r.nan, r.phase)
}

// observe records one report. A NaN term means "not computed" and is not
// exported; a NaN or infinite total loss counts in loss_nan_total instead.
func (r *reportSeries) observe(step int64, slot int, t objective.Terms, tm worker.Timing) {
	s := strconv.Itoa(slot)
	r.step.WithLabelValues(s).Set(float64(step))
	nan := r.nan.WithLabelValues(s) // the series exists from the slot's first report, at 0
	if math.IsNaN(t.Loss) || math.IsInf(t.Loss, 0) {
		nan.Inc()
	} else {
		r.loss.WithLabelValues(s).Set(t.Loss)
	}
	for _, x := range []struct {
		g *prometheus.GaugeVec
		v float64
	}{{r.cleanCE, t.CleanCE}, {r.advCE, t.AdvCE}, {r.pair, t.Pair}, {r.cleanAcc, t.CleanAcc}, {r.advAcc, t.AdvAcc}, {r.norm, t.LogitNorm}} {
		if !math.IsNaN(x.v) {
			x.g.WithLabelValues(s).Set(x.v)
		}
	}
	// A zero duration is a phase the worker did not measure (a report
	// carries 0 for a missing or invalid timing): it is not observed.
	for _, p := range []struct {
		name string
		d    time.Duration
	}{{PhaseAttack, tm.Attack}, {PhaseCompute, tm.Compute}, {PhaseComm, tm.Comm}} {
		if p.d > 0 {
			r.phase.WithLabelValues(s, p.name).Observe(p.d.Seconds())
		}
	}
}

// countNaN counts a non-finite loss that was never reported (the worker
// stopped on it).
func (r *reportSeries) countNaN(slot int) {
	r.nan.WithLabelValues(strconv.Itoa(slot)).Inc()
}
