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
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Namespace prefixes every metric name.
const Namespace = "logitpair"

// DurationBuckets are the histogram buckets of every duration in seconds:
// 1 ms to about 9 minutes, doubling.
var DurationBuckets = prometheus.ExponentialBuckets(0.001, 2, 20)

// NewRegistry returns a fresh registry holding the Go runtime and process
// collectors and logitpair_build_info, for one process's /metrics.
func NewRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), NewBuildInfo(debug.ReadBuildInfo))
	return r
}

// NewBuildInfo returns the gauge logitpair_build_info{version, go_version,
// revision}, always 1, read from the binary's build information (read is
// debug.ReadBuildInfo): version is the main module's version ("(devel)" for
// a build from a work tree), revision the VCS commit the binary was built
// from, with "-modified" when the work tree had uncommitted changes
// ("unknown" without VCS information, e.g. go test or -buildvcs=false).
// Joined on job and instance, it labels any series with the binary that
// produced it; count by (revision) shows a cluster running mixed builds.
func NewBuildInfo(read func() (*debug.BuildInfo, bool)) prometheus.Collector {
	version, goVersion, revision := "unknown", runtime.Version(), "unknown"
	if bi, ok := read(); ok && bi != nil {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		if bi.GoVersion != "" {
			goVersion = bi.GoVersion
		}
		modified := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if modified && revision != "unknown" {
			revision += "-modified"
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "build_info",
		Help:        "Always 1; its labels name the binary: the main module's version, the Go version and the VCS revision it was built from.",
		ConstLabels: prometheus.Labels{"version": version, "go_version": goVersion, "revision": revision}})
	g.Set(1)
	return g
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
