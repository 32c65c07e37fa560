package statuspage

import (
	"math"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"
)

// hostileName is a member name that would run script if it reached the
// page unescaped.
const hostileName = `<script>document.title="pwned"</script><img src=x onerror="document.title='pwned'">`

// trainingHistory feeds a history with n steps of a deterministic,
// plausible ALP run: 4 workers, 3 accepted per step (slot s%4 is the
// backup), decaying losses with seeded noise, no adversarial terms for the
// first 10 steps (NaN gaps).
func trainingHistory(t *testing.T, n int, clock *fakeClock) *History {
	t.Helper()
	h := newHistory(t, 1024, clock)
	rng := rand.New(rand.NewPCG(7, 11))
	var backup int64
	for s := range int64(n) {
		set := []int{}
		for w := range 4 {
			x := float64(s) / float64(n)
			noise := func(a float64) float64 { return a * (rng.Float64() - 0.5) }
			tm := Terms{
				CleanCE:  0.2 + 2.1*math.Exp(-4*x) + noise(0.1),
				AdvCE:    0.6 + 1.8*math.Exp(-2.5*x) + noise(0.15),
				Pair:     0.05 + 0.4*math.Exp(-3*x) + noise(0.03),
				CleanAcc: math.Min(1, 0.15+0.8*(1-math.Exp(-5*x))+noise(0.06)),
				AdvAcc:   math.Min(1, 0.05+0.55*(1-math.Exp(-3*x))+noise(0.08)),
			}
			if s < 10 {
				tm.AdvCE, tm.Pair, tm.AdvAcc = math.NaN(), math.NaN(), math.NaN()
				tm.Loss = tm.CleanCE
			} else {
				tm.Loss = 0.5*tm.CleanCE + 0.5*tm.AdvCE + 0.5*tm.Pair
			}
			h.ObserveReport(s, w, tm)
			if w != int(s%4) {
				set = append(set, w)
			}
		}
		backup++
		h.ObserveCommit(s, set, backup, s/100)
		clock.Advance(time.Duration(400+rng.IntN(200)) * time.Millisecond)
	}
	return h
}

// fakeSource is a Source over a history whose step advances by one on
// every snapshot (the live refresh must show a newer step).
type fakeSource struct {
	hist  *History
	clock *fakeClock
	calls atomic.Int64
	base  int64
	// benign replaces the hostile member name (the docs' screenshot).
	benign bool
}

func newFakeSource(t *testing.T, points int) *fakeSource {
	clock := newFakeClock()
	return &fakeSource{hist: trainingHistory(t, points, clock), clock: clock, base: int64(points)}
}

func (f *fakeSource) Snapshot() Snapshot {
	call := f.calls.Add(1) - 1
	now := f.clock.Now()
	name1 := hostileName
	if f.benign {
		name1 = "worker-1-4246"
	}
	return Snapshot{
		Time: now,
		Run: Run{Phase: PhaseRunning, Step: f.base + call, Steps: 1000, Generation: 8589934593, Restarts: 1, Rollbacks: 1, LastCheckpoint: 200,
			Required: 3, LiveWorkers: 3, Workers: 4, Backups: 1, DroppedBackup: f.base, DroppedStale: 2},
		Members: []Member{
			{Role: RoleWorker, Slot: 0, Name: "worker-0-4242", Alive: true, LastStep: f.base - 1, LastSeen: now.Add(-300 * time.Millisecond)},
			{Role: RoleWorker, Slot: 1, Name: name1, Alive: true, LastStep: f.base - 1, LastSeen: now.Add(-2 * time.Second)},
			{Role: RoleWorker, Slot: 2, Name: "worker-2-4250", Alive: true, LastStep: f.base - 2, LastSeen: now.Add(-1 * time.Second)},
			{Role: RoleWorker, Slot: 3, LastStep: -1},
			{Role: RoleShard, Slot: 0, Name: "ps-0-4100", Address: "127.0.0.1:40001", Alive: true, LastStep: -1},
			{Role: RoleShard, Slot: 1, Name: "ps-1-4101", Address: "127.0.0.1:40002", Alive: true, LastStep: -1},
		},
		StepRate:   f.hist.StepRate(30 * time.Second),
		RateWindow: Duration(30 * time.Second),
		History:    f.hist.Points(),
	}
}
