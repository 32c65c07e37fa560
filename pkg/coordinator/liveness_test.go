package coordinator_test

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/logitpair/logitpair/pkg/coordinator"
)

// fakeClock is the liveness rule's clock, moved by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// releases records Hooks.Release.
type releases struct {
	mu    sync.Mutex
	slots []int
}

func (r *releases) add(s int) { r.mu.Lock(); r.slots = append(r.slots, s); r.mu.Unlock() }
func (r *releases) get() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.slots)
}

func livenessRig(t *testing.T, workers, backups int, elastic bool, clk *fakeClock, rel *releases) *rig {
	r, _ := faultyRig(t, workers, backups, nil, func(c *coordinator.Config, h *coordinator.Hooks) {
		c.Elastic = elastic
		c.Now, c.MissedSteps, c.MinStepTime = clk.Now, 3, 5*time.Second
		h.Release = rel.add
	})
	return r
}

// A worker gossip suspects but whose reports arrive is never dropped, however
// much time passes: on a loaded machine gossip is wrong, the reports are not.
func TestGossipAloneNeverDropsAReportingWorker(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	rel := &releases{}
	r := livenessRig(t, 3, 1, false, clk, rel)
	r.c.Gossip(2, false)
	for s := int64(0); s < 10; s++ {
		clk.add(time.Minute) // slow steps on a loaded machine
		r.step(s, 0, 2, 1)   // slot 2 is among the first N; slot 1 is the backup
	}
	if st := r.c.Status(); st.LiveWorkers != 3 || st.Paused {
		t.Fatalf("status %+v, want 3 live workers, not paused", st)
	}
	if got := rel.get(); len(got) != 0 {
		t.Fatalf("released %v, want none", got)
	}
}

// A worker that gossip declares dead and that stopped reporting is dropped
// after MissedSteps committed steps without it. Gossip seeing it again does
// not make it live (its slot was released): joining again does.
func TestADeadWorkerIsDroppedAfterMissingSteps(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	rel := &releases{}
	r := livenessRig(t, 3, 1, false, clk, rel)
	r.step(0, 0, 1, 2)
	r.c.Gossip(2, false)
	r.step(1, 0, 1)
	r.step(2, 0, 1)
	if st := r.c.Status(); st.LiveWorkers != 3 || len(rel.get()) != 0 {
		t.Fatalf("after 2 missed steps: %+v released %v, want still live", st, rel.get())
	}
	r.step(3, 0, 1)
	waitFor(t, "the release", func() bool { return len(rel.get()) == 1 })
	if got := rel.get(); got[0] != 2 {
		t.Fatalf("released %v, want [2]", got)
	}
	if st := r.c.Status(); st.LiveWorkers != 2 || st.Paused {
		t.Fatalf("after 3 missed steps: %+v, want 2 live (N = 2 still met)", st)
	}
	r.c.Gossip(2, true)
	if st := r.c.Status(); st.LiveWorkers != 2 {
		t.Fatalf("after gossip saw it again: %+v, want still 2 live (it has not joined again)", st)
	}
	r.c.SetLive(2, true)
	if st := r.c.Status(); st.LiveWorkers != 3 {
		t.Fatalf("after it joined again: %+v, want 3 live", st)
	}
}

// While the current step waits for a dead worker (no backup covers it),
// missed steps are counted in step times: an elastic cluster then drops it
// and commits without it.
func TestAStepWaitingForADeadWorkerDropsItAfterMissedStepTimes(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	rel := &releases{}
	r := livenessRig(t, 2, 0, true, clk, rel)
	r.step(0, 0, 1)
	r.c.Gossip(1, false)
	for _, s := range r.shards {
		if err := s.S.Push(1, 0, []float32{1, 1, 1}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, _, err := r.c.Report(1, 0); err != nil {
		t.Fatal(err)
	}
	clk.add(14 * time.Second) // 2 step times of 5 s (MinStepTime) missed
	time.Sleep(50 * time.Millisecond)
	if st := r.c.Status(); st.Step != 1 || len(rel.get()) != 0 {
		t.Fatalf("after 2 missed step times: %+v released %v, want waiting", st, rel.get())
	}
	clk.add(2 * time.Second) // 3 step times
	waitFor(t, "the release", func() bool { return len(rel.get()) == 1 })
	waitFor(t, "the commit without it", func() bool { return r.c.Status().Step == 2 })
	if es := entries(t, r.log); len(es) != 2 || !slices.Equal(es[1].Workers, []int{0}) {
		t.Fatalf("log %+v, want step 1 made by worker 0 alone", es)
	}
}

// Waiting time counts against a suspect only while the step cannot be
// decided without it: here worker 2, unsuspected, is still computing and
// will make N = 3 with workers 0 and 1.
func TestWaitingTimeCountsOnlyWhenTheStepIsBlocked(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	rel := &releases{}
	r := livenessRig(t, 4, 1, false, clk, rel)
	r.step(0, 0, 1, 2, 3)
	r.c.Gossip(3, false)
	for _, w := range []int{0, 1} {
		for _, s := range r.shards {
			if err := s.S.Push(1, w, []float32{1, 1, 1}, nil); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, _, err := r.c.Report(1, w); err != nil {
			t.Fatal(err)
		}
	}
	clk.add(time.Hour)
	time.Sleep(50 * time.Millisecond) // probes run; none may drop worker 3
	if got := rel.get(); len(got) != 0 {
		t.Fatalf("released %v while worker 2 could still decide the step", got)
	}
	r.c.Gossip(2, false) // now the step waits on suspects only
	waitFor(t, "the release", func() bool { return len(rel.get()) == 2 })
}

// No slot is live before its worker joins: a coordinator without workers
// says 0 live and pauses, saying that none has joined; gossip alone makes
// no slot live; a join or a report does, a leave undoes it.
func TestNoWorkerIsLiveBeforeItJoins(t *testing.T) {
	r := newEmptyRig(t, 3, 1, false)
	const none = "0 live workers, 2 needed per step (no worker has joined yet: start the workers)"
	if st := r.c.Status(); st.LiveWorkers != 0 || st.Required != 2 || !st.Paused || st.Reason != none {
		t.Fatalf("before any join: %+v, want 0 live, paused with %q", st, none)
	}
	r.c.Gossip(0, true)
	if st := r.c.Status(); st.LiveWorkers != 0 || st.Reason != none {
		t.Fatalf("after gossip alone: %+v, want still 0 live", st)
	}
	r.c.SetLive(0, true)
	if st := r.c.Status(); st.LiveWorkers != 1 || !st.Paused || st.Reason != "1 live workers, 2 needed per step (start more workers, or run with --elastic)" {
		t.Fatalf("after one join: %+v", st)
	}
	if _, _, _, err := r.c.Report(0, 2); err != nil { // a report shows slot 2's worker holds it
		t.Fatal(err)
	}
	if st := r.c.Status(); st.LiveWorkers != 2 || st.Paused || st.Reason != "" {
		t.Fatalf("after a report from a second slot: %+v, want 2 live, not paused", st)
	}
	r.c.SetLive(1, true)
	r.c.SetLive(0, false)
	r.c.SetLive(2, false)
	if st := r.c.Status(); st.LiveWorkers != 1 || !st.Paused || st.Reason != "1 live workers, 2 needed per step (start more workers, or run with --elastic)" {
		t.Fatalf("after two leaves: %+v", st)
	}
	r.c.SetLive(1, false)
	if st := r.c.Status(); st.LiveWorkers != 0 || st.Reason != "0 live workers, 2 needed per step (start more workers)" {
		t.Fatalf("after every worker left: %+v", st)
	}
}

// An elastic coordinator waits for W − b workers at the start, as without
// Elastic (N is not 1 because none has joined yet); once they have been
// live together, N follows the live count.
func TestElasticWaitsForTheFullCountAtTheStart(t *testing.T) {
	r := newEmptyRig(t, 3, 0, true)
	if st := r.c.Status(); st.LiveWorkers != 0 || st.Required != 3 || !st.Paused ||
		st.Reason != "0 live workers, 3 needed per step (no worker has joined yet: start the workers)" {
		t.Fatalf("before any join: %+v", st)
	}
	r.c.SetLive(0, true)
	r.c.SetLive(1, true)
	if st := r.c.Status(); st.LiveWorkers != 2 || st.Required != 3 || st.Reason != "2 live workers, 3 needed per step (start more workers)" {
		t.Fatalf("two of three joined: %+v, want N still 3", st)
	}
	r.c.SetLive(2, true)
	if st := r.c.Status(); st.LiveWorkers != 3 || st.Required != 3 || st.Paused {
		t.Fatalf("all joined: %+v", st)
	}
	r.c.SetLive(2, false)
	if st := r.c.Status(); st.LiveWorkers != 2 || st.Required != 2 || st.Paused {
		t.Fatalf("one left: %+v, want N lowered to 2", st)
	}
	r.step(0, 0, 1)
}

// Late.Bind makes live the workers that joined the membership table before
// the coordinator was bound, and only those.
func TestBindAdoptsTheWorkersThatJoinedEarlier(t *testing.T) {
	m, err := coordinator.NewMembership(coordinator.MembershipConfig{Workers: 3, Backups: 1, Ranges: []coordinator.Range{{Hi: 3}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []int{0, 2} {
		if _, err := m.JoinWorker(s, "w"); err != nil {
			t.Fatal(err)
		}
	}
	r := newEmptyRig(t, 3, 1, false)
	var l coordinator.Late
	l.Bind(r.c, m)
	if st := r.c.Status(); st.LiveWorkers != 2 || st.Paused {
		t.Fatalf("after Bind: %+v, want the 2 joined workers live", st)
	}
	r.step(0, 2, 0)
}
