// Package metrics exports a cluster's state as Prometheus metrics: the
// coordinator's global step, step durations, live and required workers and
// checkpoint age; every shard's gradient counters and push/pull traffic; every
// worker's push/pull traffic, time split and loss terms.
//
// It adapts the cluster packages from the outside, through their hook points
// (coordinator.Hooks.Committed and Status, coordinator.CheckpointStore, the
// coordinator server's report hook, paramserver.Shard.Stats, gRPC
// interceptors, worker.Shard and worker.Coordinator wrappers), so that
// pkg/coordinator, pkg/paramserver and pkg/worker stay free of Prometheus.
//
// Every constructor registers its series on the prometheus.Registerer it is
// given (never the global default registry); a process builds one registry
// (NewRegistry) and serves it on /metrics. Names start with "logitpair_" and
// carry their unit (…_seconds, …_bytes, …_ratio, counters …_total). Per
// worker series are labelled slot, per shard series shard; the coordinator
// and the workers export the same per-slot loss and timing series (from the
// same reports), so dashboards aggregate them with max by (slot).
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Namespace prefixes every metric name.
const Namespace = "logitpair"

// DurationBuckets are the histogram buckets of every duration in seconds:
// 1 ms to about 9 minutes, doubling.
var DurationBuckets = prometheus.ExponentialBuckets(0.001, 2, 20)

// NewRegistry returns a fresh registry holding the Go runtime and process
// collectors, for one process's /metrics.
func NewRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// register registers every collector, stopping at the first error.
func register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
