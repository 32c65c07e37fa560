package node

import (
	"math"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/logitpair/logitpair/pkg/history"
	"github.com/logitpair/logitpair/pkg/optim"
	"github.com/logitpair/logitpair/pkg/sentinel"
	"github.com/logitpair/logitpair/pkg/statuspage"
)

// clusterHistory appends the coordinator's history to DIR/history.jsonl
// (pkg/history), as `logitpair train` appends its own:
//
//   - start: when the coordinator's loop starts, at the step the commit log
//     has reached;
//   - train: at every step it logs ("step committed", every --log-every
//     steps, and the last), the means of the status page's per-step
//     averages (the reports of the workers each step committed) over the
//     steps since the previous record, the learning rate of the step, and
//     the step rate over the status page's window;
//   - sentinel: every check the sentinel judged (dropped ones are not);
//   - rollback: every rollback the sentinel requested, once carried out
//     (a recovery from a shard's failure also takes the run back, without
//     a record: history.Surviving infers it from the steps).
//
// Steps are counts of steps done: committed step s is step s+1. A write
// that fails is logged once; the run goes on without its history.
type clusterHistory struct {
	w      *history.Writer
	hist   *statuspage.History
	sched  optim.Schedule
	every  int64
	steps  int64
	batch  int
	start  time.Time
	log    *zap.Logger
	warned sync.Once // the first failed write is logged

	// On the coordinator's Run goroutine (Committed, RolledBack).
	logged int64   // steps done at the last train record
	scale  float64 // the learning rate's scale
}

func (h *clusterHistory) write(r history.Record) {
	if err := h.w.Write(r); err != nil {
		h.warned.Do(func() { h.log.Warn("the run's history is not recorded from here on", zap.Error(err)) })
	}
}

// started records the coordinator's start at step (steps done).
func (h *clusterHistory) started(step int64) {
	h.logged = step
	h.write(history.Record{Kind: history.KindStart, Step: step, Steps: h.steps, Source: "coordinator"})
}

// committed records a log interval when committed step s ends one.
func (h *clusterHistory) committed(s int64) {
	done := s + 1
	if done%h.every != 0 && done != h.steps {
		return
	}
	var sums [6]float64
	var counts [6]int
	n, reports := 0, 0
	for _, p := range h.hist.Last(int(max(done-h.logged, 1))) {
		if p.Step < h.logged || p.Step > s {
			continue
		}
		n++
		reports += p.Reports
		for k, v := range []float64{p.Loss, p.CleanCE, p.AdvCE, p.Pair, p.CleanAcc, p.AdvAcc} {
			if !math.IsNaN(v) {
				sums[k] += v
				counts[k]++
			}
		}
	}
	h.logged = done
	if n == 0 {
		return
	}
	var mean [6]*float64
	for k := range mean {
		if counts[k] > 0 {
			mean[k] = history.Float(sums[k] / float64(counts[k]))
		}
	}
	r := history.Record{Kind: history.KindTrain, Step: done, Interval: n, Reports: reports, Loss: mean[0], CleanCE: mean[1], AdvCE: mean[2],
		Pair: mean[3], CleanAcc: mean[4], AdvAcc: mean[5], LR: history.Float(h.sched.LR(s) * h.scale), Elapsed: history.Float(time.Since(h.start).Seconds())}
	if rate := h.hist.StepRate(statusRateWindow); rate > 0 {
		r.StepsPerSec = history.Float(rate)
		r.SamplesPerSec = history.Float(rate * float64(h.batch) * float64(reports) / float64(n))
	}
	h.write(r)
}

// rolledBack records a rollback from step from to step to (steps done),
// with the learning rate's scale from now on.
func (h *clusterHistory) rolledBack(from, to int64, scale float64, reason string) {
	h.logged, h.scale = to, scale
	h.write(history.Record{Kind: history.KindRollback, Step: to, From: from, Reason: reason, LRScale: history.Float(scale)})
}

// checked records a sentinel check that was judged.
func (h *clusterHistory) checked(r sentinel.Result, v sentinel.Verdict) {
	verdict := history.VerdictGood
	if v.Trip {
		verdict = history.VerdictRollback
	}
	h.write(history.Record{Kind: history.KindSentinel, Step: r.Step, Clean: history.Float(r.Clean), SingleStep: history.Float(r.SingleStep),
		MultiStep: history.Float(r.MultiStep), Examples: r.Examples, Attack: r.MultiAttack, Verdict: verdict, Rule: v.Rule})
}
