package eval

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/logitpair/logitpair/pkg/attack"
	"github.com/logitpair/logitpair/pkg/data"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/nn/nntest"
)

func randomData(n int) *data.Dataset {
	rng := rand.New(rand.NewPCG(1, 1))
	d := &data.Dataset{Name: "random", C: 1, H: 28, W: 28, Classes: 10, Images: make([]float32, n*784), Labels: make([]int32, n)}
	for i := range d.Images {
		d.Images[i] = rng.Float32()
	}
	for i := range d.Labels {
		d.Labels[i] = int32(rng.IntN(10))
	}
	return d
}

func tiny(t *testing.T, seed int64) *models.Model {
	m, err := models.New(nntest.Backends()[0], "madry-mnist", models.Config{"conv1": 4, "conv2": 4, "hidden": 16})
	if err != nil {
		t.Fatal(err)
	}
	m.Init(seed)
	return m
}

// TestUntrainedModelFallsToZero: an untrained network has no robustness, so
// PGD at ε = 0.3 must leave (almost) nothing correctly classified; counts
// and fractions are consistent; progress comes after each batch.
func TestUntrainedModelFallsToZero(t *testing.T) {
	m := tiny(t, 1)
	d := randomData(60)
	var progress []string
	rep, err := Run(m, d, Options{Examples: 50, Batch: 20, Seed: 1, Attacks: []attack.Config{attack.PGD(0.3, 0.05, 20)},
		Sources: []*models.Model{tiny(t, 2)}, SourceNames: []string{"other"},
		Progress: func(done, total int) { progress = append(progress, fmt.Sprintf("%d/%d", done, total)) }})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(progress, " "); got != "20/50 40/50 50/50" {
		t.Errorf("progress %s, want 20/50 40/50 50/50", got)
	}
	if rep.Examples != 50 || rep.CleanTop5 < rep.CleanAccuracy {
		t.Fatalf("report %+v", rep)
	}
	if *rep.WhiteboxAccuracy > 0.02 {
		t.Fatalf("untrained model keeps %.3f accuracy under PGD ε=0.3", *rep.WhiteboxAccuracy)
	}
	if rep.Whitebox[0].Top5 < rep.Whitebox[0].Top1 || len(rep.Transfer) != 1 || rep.Transfer[0].Source != "other" {
		t.Fatalf("report %+v", rep)
	}
	if rep.Warning == "" {
		t.Error("one start of PGD-20 gives no warning")
	}
	// An attack of ε → 0 changes nothing: accuracy equals clean accuracy.
	rep2, err := Run(m, d, Options{Examples: 50, Batch: 50, Seed: 1, Attacks: []attack.Config{attack.PGD(1e-7, 1e-8, 1)}})
	if err != nil {
		t.Fatal(err)
	}
	if *rep2.WhiteboxAccuracy != rep2.CleanAccuracy {
		t.Fatalf("ε≈0 attack moved accuracy %v → %v", rep2.CleanAccuracy, *rep2.WhiteboxAccuracy)
	}
}

func TestShapeMismatchIsAnError(t *testing.T) {
	m := tiny(t, 1)
	d := &data.Dataset{Name: "cifar-like", C: 3, H: 32, W: 32, Classes: 10, Images: make([]float32, 3*32*32), Labels: []int32{0}}
	if _, err := Run(m, d, Options{}); err == nil || !strings.Contains(err.Error(), "expects 1×28×28") {
		t.Fatalf("got %v", err)
	}
}

func TestTopK(t *testing.T) {
	z := []float32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	for y, want := range map[int32][2]int{9: {1, 1}, 5: {0, 1}, 4: {0, 0}} {
		t1, t5 := topk(z, []int32{y}, 10)
		if t1 != want[0] || t5 != want[1] {
			t.Errorf("label %d: top1 %d top5 %d, want %v", y, t1, t5, want)
		}
	}
}

// TestWeakAttackWarning: an attack with one start or fewer than 50 steps is
// flagged, naming the strong-suite command; 2+ starts of 50+ steps is not.
func TestWeakAttackWarning(t *testing.T) {
	pgd := func(steps, restarts int) attack.Config {
		a := attack.PGD(0.3, 0.01, steps)
		a.Restarts = restarts
		return a
	}
	for _, c := range []struct {
		attacks []attack.Config
		warn    bool
	}{
		{[]attack.Config{pgd(20, 1)}, true},
		{[]attack.Config{pgd(100, 1)}, true},
		{[]attack.Config{pgd(20, 10)}, true},
		{[]attack.Config{pgd(49, 2)}, true},
		{[]attack.Config{pgd(100, 10), attack.FGSM(0.3)}, true},
		{[]attack.Config{pgd(100, 10)}, false},
		{[]attack.Config{pgd(50, 2)}, false},
		{nil, false},
	} {
		w := WeakAttackWarning(c.attacks, "run/best.safetensors")
		if (w != "") != c.warn {
			t.Errorf("%v: warning %q, want warning %v", c.attacks, w, c.warn)
			continue
		}
		if c.warn {
			if !strings.Contains(w, "logitpair eval --checkpoint run/best.safetensors --suite strong") || !strings.Contains(w, c.attacks[len(c.attacks)-1].String()) {
				t.Errorf("warning %q lacks the command or the weak attack", w)
			}
			if strings.Contains(w, pgd(100, 10).String()) {
				t.Errorf("warning %q names the strong attack too", w)
			}
		}
	}
	if w := WeakAttackWarning([]attack.Config{pgd(20, 1)}, ""); !strings.Contains(w, "logitpair eval --suite strong") {
		t.Errorf("without a checkpoint: %q", w)
	}
}
