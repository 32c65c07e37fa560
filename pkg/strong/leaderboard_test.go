package strong

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/nn/nntest"
)

// TestLeaderboardEntry: the leaderboard JSON of a small strong run carries
// RobustBench's fields in its formats (percent strings, ε as given) and
// logitpair's: examples, suite version, attacks, the hash of the config the
// checkpoint stores and the training seed only where the checkpoint has one.
func TestLeaderboardEntry(t *testing.T) {
	m, err := models.New(nntest.Backends()[0], "madry-mnist", models.Config{"conv1": 4, "conv2": 4, "hidden": 16})
	if err != nil {
		t.Fatal(err)
	}
	m.Init(1)
	d := randomImages(12, 1, 28, 28, 2)
	labelByModel(t, models.EvalView{M: m}, d)
	rep, err := Run(models.EvalView{M: m}, d, Options{Model: "tiny", Eps: 0.3, Batch: 6, Seed: 5, Steps: 3, Restarts: 1, SquareQueries: 5, Checks: CheckOptions{Skip: true}})
	if err != nil {
		t.Fatal(err)
	}
	meta := m.StateDict().Metadata
	lm := LeaderboardModel{Architecture: meta[models.MetaModel], ConfigJSON: meta[models.MetaConfig], TrainConfigJSON: `{"model":"madry-mnist","seed":7}`}
	entry := func(lm LeaderboardModel) map[string]any {
		t.Helper()
		lb, err := NewLeaderboard(rep, lm)
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(lb)
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		return got
	}
	got := entry(lm)
	sum := sha256.Sum256([]byte("madry-mnist\n" + m.ConfigJSON()))
	want := map[string]any{
		"dataset":               "random",
		"architecture":          "madry-mnist",
		"threat_model":          "Linf",
		"norm":                  "Linf",
		"eps":                   "0.3",
		"clean_acc":             "100.00",
		"robust_acc":            fmt.Sprintf("%.2f", 100*rep.RobustAccuracy),
		"number_forward_passes": 1.0,
		"n_examples":            12.0,
		"suite_version":         SuiteVersion,
		"model_config_sha256":   hex.EncodeToString(sum[:]),
		"train_seed":            7.0,
		"eval_seed":             5.0,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
	attacks := fmt.Sprint(got["attacks"])
	if attacks != "[apgd-ce apgd-dlr apgd-t-ll apgd-t-rnd square]" {
		t.Errorf("attacks = %s", attacks)
	}
	if fn, _ := got["footnote"].(string); !strings.Contains(fn, "strong suite version "+SuiteVersion) || !strings.Contains(fn, "first 12 test examples") {
		t.Errorf("footnote = %q", fn)
	}

	// No training config (e.g. a PyTorch file): no seed, not an invented one.
	lm.TrainConfigJSON = ""
	if got := entry(lm); got["train_seed"] != nil {
		t.Errorf("train_seed = %v without a training config", got["train_seed"])
	}
	// Another config, another hash.
	lm.ConfigJSON = `{"conv1":8,"conv2":4,"hidden":16}`
	if got := entry(lm); got["model_config_sha256"] == want["model_config_sha256"] {
		t.Error("different configs hash the same")
	}

	lm.TrainConfigJSON = "{"
	if _, err := NewLeaderboard(rep, lm); err == nil || !strings.Contains(err.Error(), "training config") {
		t.Errorf("bad training config: %v", err)
	}
	if _, err := NewLeaderboard(&Report{Suite: "standard"}, lm); err == nil || !strings.Contains(err.Error(), "--suite strong") {
		t.Errorf("standard report: %v", err)
	}
}

// TestLeaderboardEpsAsGiven: ε goes through float32 in the suite; the entry
// writes it back as the user wrote it.
func TestLeaderboardEpsAsGiven(t *testing.T) {
	for _, eps := range []float64{0.3, 0.1, 0.031, 8.0 / 255} {
		rep := &Report{Suite: "strong", Eps: float64(float32(eps))}
		lb, err := NewLeaderboard(rep, LeaderboardModel{Architecture: "m"})
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprint(float32(eps)); lb.Eps != want {
			t.Errorf("eps %v: %q, want %q", eps, lb.Eps, want)
		}
	}
	rep := &Report{Suite: "strong", Eps: float64(float32(0.3))}
	lb, _ := NewLeaderboard(rep, LeaderboardModel{Architecture: "m"})
	if lb.Eps != "0.3" {
		t.Errorf("eps 0.3 written as %q", lb.Eps)
	}
}
