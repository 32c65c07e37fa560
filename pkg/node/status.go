package node

import (
	"net/http"
	"time"

	coordinatorv1 "github.com/logitpair/logitpair/pkg/api/coordinator/v1"
	"github.com/logitpair/logitpair/pkg/coordinator"
	"github.com/logitpair/logitpair/pkg/objective"
	"github.com/logitpair/logitpair/pkg/rpc"
	"github.com/logitpair/logitpair/pkg/statuspage"
	"github.com/logitpair/logitpair/pkg/worker"
)

// The coordinator's status page (pkg/statuspage) keeps this many committed
// steps and measures the step rate over this window.
const (
	statusHistoryPoints = 2048
	statusRateWindow    = 30 * time.Second
)

// statusFeed feeds the status page's history from the coordinator's hooks:
// report from the CoordServer's report hook (rpc.WithOnReport), committed
// from coordinator.Hooks.Committed.
type statusFeed struct {
	hist  *statuspage.History
	coord func() *coordinator.Coordinator // nil until the coordinator is built
}

// newStatusFeed returns a feed with an empty history; coord returns the
// coordinator once it exists (nil before).
func newStatusFeed(coord func() *coordinator.Coordinator) (*statusFeed, error) {
	h, err := statuspage.NewHistory(statusHistoryPoints, nil)
	if err != nil {
		return nil, err
	}
	return &statusFeed{hist: h, coord: coord}, nil
}

// report records one worker report (accepted or not: the history averages
// only the reports of the workers its step commits).
func (f *statusFeed) report(step int64, slot int, terms objective.Terms, _ worker.Timing) {
	f.hist.ObserveReport(step, slot, statuspage.Terms{Loss: terms.Loss, CleanCE: terms.CleanCE, AdvCE: terms.AdvCE,
		Pair: terms.Pair, CleanAcc: terms.CleanAcc, AdvAcc: terms.AdvAcc})
}

// committed records that step was applied with the gradients of set, with
// the coordinator's dropped-gradient counts at that moment. It runs in the
// coordinator's Committed hook, outside the coordinator's lock.
func (f *statusFeed) committed(step int64, set []int) {
	var backup, stale int64
	if c := f.coord(); c != nil {
		st := c.Status()
		backup, stale = st.DroppedBackup, st.StaleReports
	}
	f.hist.ObserveCommit(step, set, backup, stale)
}

// statusSource is the status page's view of the coordinator, its membership
// registry and the history.
type statusSource struct {
	feed  *statusFeed
	reg   *rpc.Registry
	steps int64
	now   func() time.Time
}

// Snapshot implements statuspage.Source.
func (s *statusSource) Snapshot() statuspage.Snapshot {
	now := s.now()
	snap := statuspage.Snapshot{Time: now, StepRate: s.feed.hist.StepRate(statusRateWindow),
		RateWindow: statuspage.Duration(statusRateWindow), History: s.feed.hist.Points()}
	run := statuspage.Run{Phase: statuspage.PhaseStarting, Steps: s.steps, Workers: s.reg.Workers(), Backups: s.reg.Backups(),
		Required: s.reg.Workers() - s.reg.Backups()}
	if c := s.feed.coord(); c == nil {
		run.Reason = "waiting for every parameter-server shard to join"
	} else {
		st := c.Status()
		run.Step, run.Generation, run.Required, run.LiveWorkers = st.Step, st.Generation, st.Required, st.LiveWorkers
		run.Paused, run.Reason, run.LastCheckpoint = st.Paused, st.Reason, st.LastCheckpoint
		run.DroppedBackup, run.DroppedStale = st.DroppedBackup, st.StaleReports
		select {
		case <-c.Ready():
			switch {
			case st.Done:
				run.Phase = statuspage.PhaseDone
			case st.Paused:
				run.Phase = statuspage.PhasePaused
			default:
				run.Phase = statuspage.PhaseRunning
			}
		default:
			if run.Reason == "" {
				run.Reason = "recovering the global step from the commit log and the shards"
			}
		}
	}
	snap.Run = run
	snap.Members = statusMembers(s.reg)
	return snap
}

// statusMembers lists every worker slot (free ones as not alive) and every
// shard of the registry. A shard's last-seen time is left out: the registry
// records only when it joined.
func statusMembers(reg *rpc.Registry) []statuspage.Member {
	type key struct {
		role string
		slot int
	}
	held := map[key]*coordinatorv1.MemberStatus{}
	for _, m := range reg.Members() {
		held[key{m.GetRole(), int(m.GetSlot())}] = m
	}
	var out []statuspage.Member
	for w := range reg.Workers() {
		m := statuspage.Member{Role: statuspage.RoleWorker, Slot: w, LastStep: -1}
		if ms := held[key{rpc.RoleWorker, w}]; ms != nil {
			m.Name, m.Alive, m.LastStep = ms.GetNodeName(), ms.GetLive(), ms.GetLastStep()
			if ms.GetLastSeenUnixMs() > 0 {
				m.LastSeen = time.UnixMilli(ms.GetLastSeenUnixMs())
			}
		}
		out = append(out, m)
	}
	// The shard map (every index, with the address it last joined with).
	a, err := reg.Assignment(rpc.RoleParamServer, 0, 0, 0)
	if err != nil {
		return out
	}
	for k, si := range a.GetShards() {
		m := statuspage.Member{Role: statuspage.RoleShard, Slot: k, Address: si.GetAddress(), LastStep: -1}
		if ms := held[key{rpc.RoleParamServer, k}]; ms != nil {
			m.Name, m.Alive = ms.GetNodeName(), ms.GetLive()
		}
		out = append(out, m)
	}
	return out
}

// statusHandlers returns the coordinator's status page, to mount on its
// HTTP endpoint (startHTTP's extra): "/" (exactly) the page, "/status.json"
// its data. steps is the run's length.
func statusHandlers(feed *statusFeed, reg *rpc.Registry, steps int64) (map[string]http.Handler, error) {
	h, err := statuspage.NewHandler(&statusSource{feed: feed, reg: reg, steps: steps, now: time.Now}, statuspage.Options{})
	if err != nil {
		return nil, err
	}
	return map[string]http.Handler{"/{$}": h, "/status.json": h}, nil
}
