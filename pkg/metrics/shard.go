package metrics

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	paramserverv1 "github.com/logitpair/logitpair/pkg/api/paramserver/v1"
	"github.com/logitpair/logitpair/pkg/paramserver"
)

// Reasons a gradient is dropped, the values of the reason label.
const (
	ReasonStale    = "stale"    // pushed after its step was applied
	ReasonBackup   = "backup"   // buffered, but its worker was not in the applied set
	ReasonRejected = "rejected" // refused: wrong length, non-finite, unknown worker, future step, conflict, malformed stream
	ReasonRestore  = "restore"  // buffered, then discarded by a rollback
)

// Shard holds one parameter-server shard's series, all labelled shard. The
// gradient counters read the shard's own counters at scrape time
// (SetStatsSource); push, pull and apply traffic is measured by gRPC
// interceptors (ServerOptions).
type Shard struct {
	label                       prometheus.Labels
	pullDur, pushDur, applyDur  prometheus.Histogram
	pullBytes, pushBytes        prometheus.Counter
	errs                        *prometheus.CounterVec
	version, pending            *prometheus.Desc
	received, applied, stepsApp *prometheus.Desc
	pulls, dropped              *prometheus.Desc

	mu        sync.Mutex
	stats     func() paramserver.Stats
	malformed func() int64
}

// NewShard registers shard index's series on reg.
func NewShard(reg prometheus.Registerer, index int) (*Shard, error) {
	if index < 0 {
		return nil, errShardIndex(index)
	}
	l := prometheus.Labels{"shard": strconv.Itoa(index)}
	h := func(name, help string) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: name, Help: help, Buckets: DurationBuckets, ConstLabels: l})
	}
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help, ConstLabels: l})
	}
	d := func(name, help string, vars ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, vars, l)
	}
	m := &Shard{
		label:     l,
		pullDur:   h("shard_pull_duration_seconds", "Time the shard took to answer a pull, long-poll wait for the requested version included."),
		pushDur:   h("shard_push_duration_seconds", "Time the shard took to receive and buffer a pushed gradient."),
		applyDur:  h("shard_apply_duration_seconds", "Time the shard took to apply a step (average, optimizer, EMA)."),
		pullBytes: c("shard_pull_bytes_total", "Bytes of pull responses the shard sent (protobuf payload)."),
		pushBytes: c("shard_push_bytes_total", "Bytes of pushed gradients the shard received (protobuf payload)."),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "shard_rpc_errors_total",
			Help: "Pull, push and apply calls the shard answered with an error.", ConstLabels: l}, []string{"method"}),
		version:  d("shard_version", "The shard's version: the next step it will apply."),
		pending:  d("shard_gradients_pending", "Gradients buffered for the shard's current version."),
		received: d("shard_gradients_received_total", "Gradient pushes the shard received (every push call)."),
		applied:  d("shard_gradients_applied_total", "Gradients averaged into applied steps."),
		stepsApp: d("shard_steps_applied_total", "Steps the shard applied."),
		pulls:    d("shard_pulls_total", "Pulls answered with parameters."),
		dropped: d("shard_gradients_dropped_total", "Gradients that did not make a step, by reason: stale (pushed after the step was applied), "+
			"backup (not in the applied set), rejected (refused as invalid), restore (discarded by a rollback).", "reason"),
	}
	if err := register(reg, m.pullDur, m.pushDur, m.applyDur, m.pullBytes, m.pushBytes, m.errs, (*shardStats)(m)); err != nil {
		return nil, err
	}
	return m, nil
}

// SetStatsSource makes stats (paramserver.Shard.Stats) the source of the
// gradient counters; malformed (rpc.PSServer's malformed pushes, which the
// shard never saw) is added to the rejected ones, and may be nil.
func (m *Shard) SetStatsSource(stats func() paramserver.Stats, malformed func() int64) {
	m.mu.Lock()
	m.stats, m.malformed = stats, malformed
	m.mu.Unlock()
}

// shardStats is the scrape-time collector of a Shard's counters.
type shardStats Shard

func (s *shardStats) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{s.version, s.pending, s.received, s.applied, s.stepsApp, s.pulls, s.dropped} {
		ch <- d
	}
}

func (s *shardStats) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	stats, malformed := s.stats, s.malformed
	s.mu.Unlock()
	if stats == nil {
		return
	}
	st := stats()
	var bad int64
	if malformed != nil {
		bad = malformed()
	}
	g := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	c := func(d *prometheus.Desc, v int64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), lv...)
	}
	g(s.version, st.Version)
	g(s.pending, st.Pending)
	c(s.received, st.Pushes+bad)
	c(s.applied, st.Used)
	c(s.stepsApp, st.Applied)
	c(s.pulls, st.Pulls)
	c(s.dropped, st.Rejected.Stale, ReasonStale)
	c(s.dropped, st.DroppedBackup, ReasonBackup)
	c(s.dropped, st.Rejected.Total()-st.Rejected.Stale+bad, ReasonRejected)
	c(s.dropped, st.DroppedRestore, ReasonRestore)
}

// ServerOptions returns the gRPC server options that measure the shard's
// pull, push and apply calls. They chain with other interceptors (the join
// token check runs first when its options come first).
func (m *Shard) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainStreamInterceptor(m.streamInterceptor), grpc.ChainUnaryInterceptor(m.unaryInterceptor)}
}

func (m *Shard) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	var dur prometheus.Histogram
	var bytes prometheus.Counter
	var method string
	cs := &countingStream{ServerStream: ss}
	switch info.FullMethod {
	case paramserverv1.ParameterServer_Pull_FullMethodName:
		dur, bytes, method = m.pullDur, m.pullBytes, "pull"
	case paramserverv1.ParameterServer_Push_FullMethodName:
		dur, bytes, method = m.pushDur, m.pushBytes, "push"
	default:
		return h(srv, ss)
	}
	t0 := time.Now()
	err := h(srv, cs)
	dur.Observe(time.Since(t0).Seconds())
	if method == "pull" {
		bytes.Add(float64(cs.sent))
	} else {
		bytes.Add(float64(cs.recv))
	}
	if err != nil {
		m.errs.WithLabelValues(method).Inc()
	}
	return err
}

func (m *Shard) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if info.FullMethod != paramserverv1.ParameterServer_Apply_FullMethodName {
		return h(ctx, req)
	}
	t0 := time.Now()
	resp, err := h(ctx, req)
	m.applyDur.Observe(time.Since(t0).Seconds())
	if err != nil {
		m.errs.WithLabelValues("apply").Inc()
	}
	return resp, err
}

// countingStream counts the protobuf bytes of the messages a server stream
// sends and receives.
type countingStream struct {
	grpc.ServerStream
	sent, recv int64
}

func (s *countingStream) SendMsg(msg any) error {
	err := s.ServerStream.SendMsg(msg)
	if err == nil {
		if pm, ok := msg.(proto.Message); ok {
			s.sent += int64(proto.Size(pm))
		}
	}
	return err
}

func (s *countingStream) RecvMsg(msg any) error {
	err := s.ServerStream.RecvMsg(msg)
	if err == nil {
		if pm, ok := msg.(proto.Message); ok {
			s.recv += int64(proto.Size(pm))
		}
	}
	return err
}
