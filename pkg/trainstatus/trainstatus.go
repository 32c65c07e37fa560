// Package trainstatus serves a single-process run (`logitpair train
// --http-listen ADDR`) as the cluster's coordinator serves a cluster: the
// same /metrics series (metrics.Local, the sentinel's sentinel.Collector)
// and the same status page (pkg/statuspage) on the same endpoint
// (pkg/endpoint). The run is one worker (slot 0, this process) and has no
// shards; every step is committed as it is done.
//
// The trainer feeds it on its own goroutine (Trainer.OnStep: Step;
// Trainer.Record: Record); the endpoint reads it from others.
package trainstatus

import (
	"context"
	"math"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/logitpair/logitpair/pkg/endpoint"
	"github.com/logitpair/logitpair/pkg/history"
	"github.com/logitpair/logitpair/pkg/metrics"
	"github.com/logitpair/logitpair/pkg/objective"
	"github.com/logitpair/logitpair/pkg/sentinel"
	"github.com/logitpair/logitpair/pkg/statuspage"
)

// The status page keeps this many steps and measures the step rate over
// this window (as the coordinator's).
const (
	historyPoints = 2048
	rateWindow    = 30 * time.Second
)

// Live is a single-process run's metrics and status.
type Live struct {
	Metrics  *metrics.Local
	Sentinel *sentinel.Collector
	hist     *statuspage.History
	steps    int64
	sentCfg  sentinel.Config
	name     string
	now      func() time.Time

	mu       sync.Mutex
	step     int64
	lastSeen time.Time
	done     bool
	ckpt     int64
	sent     *sentinel.State // nil: the run has no sentinel
}

// New registers the run's series on reg: the run starts at step (a resumed
// run's) and is steps long; sentCfg is its sentinel's configuration and
// sent its state, when the run has one (the sentinel is on, or the resumed
// run had one; nil otherwise).
func New(reg prometheus.Registerer, step, steps int64, sentCfg sentinel.Config, sent *sentinel.State) (*Live, error) {
	m, err := metrics.NewLocal(reg, step, steps)
	if err != nil {
		return nil, err
	}
	h, err := statuspage.NewHistory(historyPoints, nil)
	if err != nil {
		return nil, err
	}
	coll := sentinel.NewCollector()
	if err := reg.Register(coll); err != nil {
		return nil, err
	}
	l := &Live{Metrics: m, Sentinel: coll, hist: h, steps: steps, sentCfg: sentCfg, now: time.Now, step: step}
	if sent != nil {
		s := *sent
		l.sent = &s
		coll.SetState(s)
	}
	if l.name, err = os.Hostname(); err != nil {
		l.name = "this process"
	}
	l.name += " (train)"
	return l, nil
}

// Step records that step is done with terms (Trainer.OnStep).
func (l *Live) Step(step int64, t objective.Terms) {
	l.Metrics.Step(step, t)
	l.hist.ObserveReport(step, metrics.LocalSlot, statuspage.Terms{Loss: t.Loss, CleanCE: t.CleanCE, AdvCE: t.AdvCE, Pair: t.Pair,
		CleanAcc: t.CleanAcc, AdvAcc: t.AdvAcc})
	l.hist.ObserveCommit(step, []int{metrics.LocalSlot}, 0, 0)
	l.mu.Lock()
	l.step, l.lastSeen = step+1, l.now()
	l.mu.Unlock()
}

// Record takes the trainer's history records (Trainer.Record): the
// learning rate and throughput of log intervals, rollbacks; state is the
// sentinel's state after r (Trainer.Sentinel).
func (l *Live) Record(r history.Record, state sentinel.State) {
	switch r.Kind {
	case history.KindTrain:
		l.Metrics.Interval(history.Value(r.LR), history.Value(r.SamplesPerSec))
	case history.KindRollback:
		l.Metrics.SetStep(r.Step)
		l.mu.Lock()
		l.step = r.Step
		l.mu.Unlock()
	}
	if r.Kind == history.KindSentinel || r.Kind == history.KindRollback {
		l.mu.Lock()
		l.sent = &state
		l.mu.Unlock()
	}
}

// Checkpointed records the step of the newest checkpoint.
func (l *Live) Checkpointed(step int64) {
	l.mu.Lock()
	l.ckpt = step
	l.mu.Unlock()
}

// Done marks the run as done (the page's phase).
func (l *Live) Done() {
	l.mu.Lock()
	l.done = true
	l.mu.Unlock()
}

// Snapshot implements statuspage.Source.
func (l *Live) Snapshot() statuspage.Snapshot {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	run := statuspage.Run{Phase: statuspage.PhaseRunning, Step: l.step, Steps: l.steps, Required: 1, LiveWorkers: 1, Workers: 1,
		LastCheckpoint: l.ckpt}
	if l.done {
		run.Phase = statuspage.PhaseDone
	}
	w := statuspage.Member{Role: statuspage.RoleWorker, Slot: metrics.LocalSlot, Name: l.name, Alive: true, LastStep: l.step - 1, LastSeen: l.lastSeen}
	if l.lastSeen.IsZero() {
		w.LastSeen = now
	}
	s := statuspage.Snapshot{Time: now, Run: run, Members: []statuspage.Member{w}, StepRate: l.hist.StepRate(rateWindow),
		RateWindow: statuspage.Duration(rateWindow), History: l.hist.Points()}
	if l.sent != nil {
		st := l.sent
		s.Sentinel = &statuspage.Sentinel{Every: l.sentCfg.Every, LastGood: st.LastGood, Best: st.Best, BestStep: st.BestStep,
			Rollbacks: st.Rollbacks, MaxRollbacks: l.sentCfg.MaxRollbacks, LRScale: st.Scale()}
		if r := st.Last; r != nil {
			s.Sentinel.Last = &statuspage.SentinelCheck{Step: r.Step, Clean: r.Clean, SingleStep: r.SingleStep, MultiStep: r.MultiStep, Gap: r.Gap()}
		}
	}
	if math.IsNaN(s.StepRate) {
		s.StepRate = 0
	}
	return s
}

// Serve serves /metrics (reg), /healthz, /readyz and the status page ("/"
// and /status.json) on addr until ctx ends or the server is closed
// (endpoint.Start).
func (l *Live) Serve(ctx context.Context, addr string, reg *prometheus.Registry, log *zap.Logger) (*endpoint.Server, error) {
	h, err := statuspage.NewHandler(l, statuspage.Options{Title: "logitpair train", SingleProcess: true})
	if err != nil {
		return nil, err
	}
	return endpoint.Start(ctx, addr, reg, func() bool { return true }, map[string]http.Handler{"/{$}": h, "/status.json": h}, log)
}
