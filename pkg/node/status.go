package node

import (
	"net/http"
	"time"

	"github.com/logitpair/logitpair/pkg/coordinator"
	"github.com/logitpair/logitpair/pkg/objective"
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
	coord *coordinator.Late // unset until the coordinator is built
	// sentinel, when set, is the training sentinel the page shows.
	sentinel *clusterSentinel
}

// newStatusFeed returns a feed with an empty history over the coordinator
// coord will hold.
func newStatusFeed(coord *coordinator.Late) (*statusFeed, error) {
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
	if c := f.coord.Get(); c != nil {
		st := c.Status()
		backup, stale = st.DroppedBackup, st.StaleReports
	}
	f.hist.ObserveCommit(step, set, backup, stale)
}

// statusSource is the status page's view of the coordinator, its membership
// table and the history.
type statusSource struct {
	feed  *statusFeed
	reg   *coordinator.Membership
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
	if c := s.feed.coord.Get(); c == nil {
		run.Reason = "waiting for every parameter-server shard to join"
	} else {
		st := c.Status()
		run.Step, run.Generation, run.Required, run.LiveWorkers = st.Step, st.Generation, st.Required, st.LiveWorkers
		run.Restarts, run.Rollbacks = coordinator.SplitGeneration(st.Generation)
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
	snap.Sentinel = s.feed.sentinel.status()
	return snap
}

// statusMembers lists every worker slot (free ones as not alive) and every
// shard of the membership table. A shard's last-seen time is left out: the
// table records only when it joined.
func statusMembers(reg *coordinator.Membership) []statuspage.Member {
	type key struct {
		kind coordinator.MemberKind
		slot int
	}
	held := map[key]coordinator.Member{}
	for _, m := range reg.Members() {
		held[key{m.Kind, m.Slot}] = m
	}
	var out []statuspage.Member
	for w := range reg.Workers() {
		m := statuspage.Member{Role: statuspage.RoleWorker, Slot: w, LastStep: -1}
		if ms, ok := held[key{coordinator.KindWorker, w}]; ok {
			m.Name, m.Alive, m.LastStep, m.LastSeen = ms.Node, ms.Live, ms.LastStep, ms.LastSeen
		}
		out = append(out, m)
	}
	// The shard map (every index, with the address it last joined with).
	for _, si := range reg.ShardMap() {
		m := statuspage.Member{Role: statuspage.RoleShard, Slot: si.Index, Address: si.Address, LastStep: -1}
		if ms, ok := held[key{coordinator.KindShard, si.Index}]; ok {
			m.Name, m.Alive = ms.Node, ms.Live
		}
		out = append(out, m)
	}
	return out
}

// statusHandlers returns the coordinator's status page, to mount on its
// HTTP endpoint (startHTTP's extra): "/" (exactly) the page, "/status.json"
// its data. steps is the run's length.
func statusHandlers(feed *statusFeed, reg *coordinator.Membership, steps int64) (map[string]http.Handler, error) {
	h, err := statuspage.NewHandler(&statusSource{feed: feed, reg: reg, steps: steps, now: time.Now}, statuspage.Options{})
	if err != nil {
		return nil, err
	}
	return map[string]http.Handler{"/{$}": h, "/status.json": h}, nil
}
