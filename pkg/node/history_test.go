package node

import (
	"math"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/logitpair/logitpair/pkg/history"
	"github.com/logitpair/logitpair/pkg/optim"
	"github.com/logitpair/logitpair/pkg/statuspage"
)

// TestClusterHistoryIntervals: with --log-every 2 over 5 steps, the
// coordinator's train records are at steps 2, 4 and 5 (the last), each the
// mean of its steps' per-step averages over the workers' reports; a
// rollback to 2 starts the next interval there.
func TestClusterHistoryIntervals(t *testing.T) {
	dir := t.TempDir()
	w, err := history.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ph, _ := statuspage.NewHistory(16, nil)
	sched, _ := optim.ParseSchedule("constant", 0.1)
	h := &clusterHistory{w: w, hist: ph, sched: sched, every: 2, steps: 5, batch: 8, start: time.Now(), log: zap.NewNop(), scale: 1}
	h.started(0)
	commit := func(s int64, loss0, loss1 float64) {
		ph.ObserveReport(s, 0, statuspage.Terms{Loss: loss0, AdvAcc: math.NaN(), CleanAcc: 0.5})
		ph.ObserveReport(s, 1, statuspage.Terms{Loss: loss1, AdvAcc: math.NaN(), CleanAcc: 0.5})
		ph.ObserveCommit(s, []int{0, 1}, 0, 0)
		h.committed(s)
	}
	commit(0, 1, 3) // step 1: mean 2
	commit(1, 3, 5) // step 2: mean 4
	commit(2, 9, 9)
	h.rolledBack(3, 2, 0.5, "test")
	commit(2, 5, 7) // step 3 again: 6
	commit(3, 7, 9) // step 4: 8
	commit(4, 1, 1) // step 5, the last
	w.Close()
	recs, notes, err := history.ReadFile(filepath.Join(dir, history.FileName))
	if err != nil || len(notes) > 0 {
		t.Fatal(err, notes)
	}
	type rec struct {
		kind           string
		step           int64
		loss, lr       float64
		interval, reps int
	}
	var got []rec
	for _, r := range recs {
		got = append(got, rec{r.Kind, r.Step, history.Value(r.Loss), history.Value(r.LR), r.Interval, r.Reports})
		if r.Kind == history.KindTrain && (r.AdvAcc != nil || history.Value(r.CleanAcc) != 0.5) {
			t.Errorf("record %+v: want no adversarial accuracy, clean 0.5", r)
		}
	}
	nan := math.NaN()
	want := []rec{{"start", 0, nan, nan, 0, 0}, {"train", 2, 3, 0.1, 2, 4}, {"rollback", 2, nan, nan, 0, 0},
		{"train", 4, 7, 0.05, 2, 4}, {"train", 5, 1, 0.05, 1, 2}}
	if len(got) != len(want) {
		t.Fatalf("records %+v\nwant %+v", got, want)
	}
	same := func(a, b float64) bool { return a == b || math.IsNaN(a) && math.IsNaN(b) }
	for i := range want {
		g, w := got[i], want[i]
		if g.kind != w.kind || g.step != w.step || !same(g.loss, w.loss) || !same(g.lr, w.lr) || g.interval != w.interval || g.reps != w.reps {
			t.Errorf("record %d: %+v, want %+v", i, g, w)
		}
	}
}
