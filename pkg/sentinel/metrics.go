package sentinel

import (
	"math"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector is the sentinel's Prometheus series (pkg/metrics's naming:
// "logitpair_" prefix, counters …_total):
//
//	logitpair_sentinel_rollbacks_total{reason="collapse"|"gap"}  rollbacks, by the rule that tripped
//	logitpair_sentinel_robust_accuracy                           the last check's multi-step accuracy
//	logitpair_sentinel_gap                                       the last check's single-step − multi-step accuracy
//	logitpair_sentinel_lr_scale                                  the learning rate's scale now
//
// The accuracy and the gap are NaN before the first check, the scale 1.
// Register it on the process's registry (reg.Register(c)); it is safe for
// concurrent use.
type Collector struct {
	mu        sync.Mutex
	rollbacks *prometheus.CounterVec
	robust    prometheus.Gauge
	gap       prometheus.Gauge
	scale     prometheus.Gauge
}

// NewCollector returns a collector with both reasons' counters at 0.
func NewCollector() *Collector {
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "logitpair", Subsystem: "sentinel", Name: name, Help: help})
	}
	c := &Collector{
		rollbacks: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "logitpair", Subsystem: "sentinel", Name: "rollbacks_total",
			Help: "Rollbacks to the last good checkpoint by the training sentinel, by the rule that tripped: collapse (robust accuracy below a fraction of its best) or gap (single-step minus multi-step accuracy too large)."}, []string{"reason"}),
		robust: g("robust_accuracy", "Multi-step (PGD) validation accuracy of the sentinel's last check (NaN before the first)."),
		gap:    g("gap", "Single-step (FGSM) minus multi-step (PGD) validation accuracy of the sentinel's last check (NaN before the first)."),
		scale:  g("lr_scale", "The factor the sentinel's rollbacks have multiplied the learning rate by (1: none)."),
	}
	c.rollbacks.WithLabelValues(RuleCollapse)
	c.rollbacks.WithLabelValues(RuleGap)
	c.robust.Set(math.NaN())
	c.gap.Set(math.NaN())
	c.scale.Set(1)
	return c
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	c.rollbacks.Describe(ch)
	c.robust.Describe(ch)
	c.gap.Describe(ch)
	c.scale.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rollbacks.Collect(ch)
	c.robust.Collect(ch)
	c.gap.Collect(ch)
	c.scale.Collect(ch)
}

// Record records a check that Observe judged without an error: its
// result, the rollback when v tripped, and s's scale (s is the state after
// Observe). A nil Collector records nothing.
func (c *Collector) Record(r Result, v Verdict, s State) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.robust.Set(r.MultiStep)
	c.gap.Set(r.Gap())
	c.scale.Set(s.Scale())
	if v.Trip {
		c.rollbacks.WithLabelValues(v.Rule).Inc()
	}
}

// SetState sets the gauges from a state (a resumed run's): its scale and
// its last check's result, when it has one. Counters start at 0 in every
// process, as Prometheus counters do. A nil Collector records nothing.
func (c *Collector) SetState(s State) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.scale.Set(s.Scale())
	if s.Last != nil {
		c.robust.Set(s.Last.MultiStep)
		c.gap.Set(s.Last.Gap())
	}
}
