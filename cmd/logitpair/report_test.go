package main

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/logitpair/logitpair/pkg/checkpoint"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/safetensors"
	"github.com/logitpair/logitpair/pkg/strong"
	"github.com/logitpair/logitpair/pkg/tensor/cpu"
)

// writeStrongFixtures writes a 12-example MNIST-format test set and an
// untrained tiny madry-mnist checkpoint.
func writeStrongFixtures(t *testing.T, dir string) (dataDir, ckpt string) {
	t.Helper()
	dataDir = filepath.Join(dir, "mnist")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	const n = 12
	rng := rand.New(rand.NewPCG(3, 4))
	imgs := &bytes.Buffer{}
	binary.Write(imgs, binary.BigEndian, []uint32{0x803, n, 28, 28})
	lbls := &bytes.Buffer{}
	binary.Write(lbls, binary.BigEndian, []uint32{0x801, n})
	for i := 0; i < n; i++ {
		lbls.WriteByte(byte(rng.IntN(10)))
		for p := 0; p < 784; p++ {
			imgs.WriteByte(byte(rng.IntN(256)))
		}
	}
	for name, b := range map[string][]byte{"t10k-images-idx3-ubyte.gz": imgs.Bytes(), "t10k-labels-idx1-ubyte.gz": lbls.Bytes()} {
		var z bytes.Buffer
		w := gzip.NewWriter(&z)
		w.Write(b)
		w.Close()
		if err := os.WriteFile(filepath.Join(dataDir, name), z.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m, err := models.New(cpu.New(cpu.Options{Threads: 1}), "madry-mnist", models.Config{"conv1": 2, "conv2": 2, "hidden": 8})
	if err != nil {
		t.Fatal(err)
	}
	m.Init(1)
	ckpt = filepath.Join(dir, "tiny.safetensors")
	if err := m.StateDict().WriteFileAtomic(ckpt); err != nil {
		t.Fatal(err)
	}
	return dataDir, ckpt
}

func TestEvalStrongSuiteAndReport(t *testing.T) {
	dir := t.TempDir()
	dataDir, ckpt := writeStrongFixtures(t, dir)
	// The checkpoint records its training compute; eval and report carry it.
	f, err := safetensors.ReadFile(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	f.Metadata[checkpoint.MetaCompute] = checkpoint.Compute{WallSeconds: 3725.4, Steps: 100, ExamplesSeen: 5000,
		ForwardPasses: 210000, BackwardPasses: 205000}.WithDataset(1000).JSON()
	// As a training run writes it, the checkpoint has its training config.
	f.Metadata[models.MetaTrainConfig] = `{"model":"madry-mnist","seed":42}`
	if err := f.WriteFileAtomic(ckpt); err != nil {
		t.Fatal(err)
	}
	runDir := filepath.Join(dir, "tiny-run")
	jsonPath := filepath.Join(dir, "strong.json")
	lbPath := filepath.Join(dir, "leaderboard.json")
	out, err := run(t, "eval", "--suite", "strong", "--checkpoint", ckpt, "--dataset", "mnist", "--data-dir", dataDir,
		"--examples", "8", "--batch", "4", "--steps", "3", "--restarts", "2", "--square-queries", "5", "--check-examples", "4",
		"--threads", "1", "--source", ckpt, "--report", runDir, "--json", jsonPath, "--leaderboard", lbPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"apgd-ce", "apgd-dlr", "apgd-t-ll", "apgd-t-rnd", "square", "transfer:", "robust accuracy", "report written"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, f := range []string{"eval.json", "report.md", "eps.png", "steps.png", "convergence.png", "slices.png"} {
		if st, err := os.Stat(filepath.Join(runDir, f)); err != nil || st.Size() == 0 {
			t.Errorf("report file %s: %v", f, err)
		}
	}
	md, _ := os.ReadFile(filepath.Join(runDir, "report.md"))
	for _, want := range []string{"## Attack cascade", "## Gradient-masking checks", "![accuracy vs ε](eps.png)", "| large-eps |"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	var rep map[string]any
	b, _ := os.ReadFile(jsonPath)
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"eps": 0.3,`) {
		t.Errorf("JSON: ε not as written:\n%s", b)
	}
	if rep["suite"] != "strong" || rep["examples"].(float64) != 8 || rep["settings"].(map[string]any)["restarts"].(float64) != 2 {
		t.Fatalf("JSON: %s", b)
	}
	var lb map[string]any
	lbb, _ := os.ReadFile(lbPath)
	if err := json.Unmarshal(lbb, &lb); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"architecture": "madry-mnist", "dataset": "mnist", "eps": "0.3", "threat_model": "Linf", "n_examples": 8.0,
		"clean_acc":           fmt.Sprintf("%.2f", 100*rep["clean_accuracy"].(float64)),
		"robust_acc":          fmt.Sprintf("%.2f", 100*rep["robust_accuracy"].(float64)),
		"model_config_sha256": strong.ConfigHash("madry-mnist", f.Metadata[models.MetaConfig]),
		"train_seed":          42.0, "suite_version": strong.SuiteVersion}
	for k, v := range want {
		if lb[k] != v {
			t.Errorf("leaderboard %s = %#v, want %#v", k, lb[k], v)
		}
	}
	if !strings.Contains(fmt.Sprint(lb["attacks"]), "transfer:"+ckpt) {
		t.Errorf("leaderboard attacks %v lack the transfer stage", lb["attacks"])
	}
	if c, ok := rep["compute"].(map[string]any); !ok || c["passes_per_example"] != 415.0 || c["steps"] != 100.0 {
		t.Fatalf("JSON compute: %s", b)
	}

	// report: a run directory and a standard-suite JSON file.
	std := filepath.Join(dir, "m-pgd.json")
	os.WriteFile(std, []byte(`{"model":"x","dataset":"mnist","examples":10,"clean_accuracy":0.985,"whitebox_accuracy":0.932,"transfer_accuracy":0.96}`), 0o644)
	out, err = run(t, "report", runDir, std, "ALP="+filepath.Join(runDir, "eval.json"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out, "\n")
	if lines[0] != "| Method | White box | Black box | Clean |" || !strings.HasPrefix(lines[2], "| tiny-run | ") ||
		lines[3] != "| m-pgd | 93.20% | 96.00% | 98.50% |" || !strings.HasPrefix(lines[4], "| ALP | ") {
		t.Fatalf("table:\n%s", out)
	}
	if !strings.Contains(out, "- tiny-run: strong suite, ε = 0.3, 8 examples") {
		t.Errorf("no strong-suite note:\n%s", out)
	}
	if note := "- tiny-run: trained 100 steps (5000 examples) in 1h2m5s wall time; 415 passes per training example (210 forward + 205 backward, over 1000 examples); 210000 forward and 205000 backward passes in total"; !strings.Contains(out, note) {
		t.Errorf("no compute note %q:\n%s", note, out)
	}
	if strings.Contains(out, "- m-pgd: trained") {
		t.Errorf("a compute note for a run without one:\n%s", out)
	}
}

func TestStrongSuiteErrors(t *testing.T) {
	dir := t.TempDir()
	for want, args := range map[string][]string{
		"chooses its own attacks": {"eval", "--suite", "strong", "--checkpoint", "x", "--attack", "pgd_76.5_2.55_40"},
		"want standard or strong": {"eval", "--suite", "auto", "--checkpoint", "x"},
		"--report needs":          {"eval", "--checkpoint", "x", "--report", dir},
		"--leaderboard needs":     {"eval", "--checkpoint", "x", "--leaderboard", "lb.json"},
		"both want standard":      {"eval", "--suite", "strong", "--checkpoint", "x", "--json", "-", "--leaderboard", "-"},
		"not an eval report":      {"report", writeReportFile(t, dir, "bad.json", `{"model":"m"}`)},
		"no such file":            {"report", filepath.Join(dir, "missing")},
	} {
		if _, err := run(t, args...); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: got %v, want %q", args, err, want)
		}
	}
}

func writeReportFile(t *testing.T, dir, name, content string) string {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestReportTransferTable: two tiny models evaluated with logitpair eval
// --source on each other; report --source shows, per run, the accuracy under
// the attacks crafted on each source (the lowest over the attacks from it), —
// where the run has none (its own model), the worst column, and reads a
// strong-suite run's stand-alone transfer accuracy too.
func TestReportTransferTable(t *testing.T) {
	dir := t.TempDir()
	dataDir, a := writeStrongFixtures(t, dir)
	m, err := models.New(cpu.New(cpu.Options{Threads: 1}), "madry-mnist", models.Config{"conv1": 2, "conv2": 2, "hidden": 8})
	if err != nil {
		t.Fatal(err)
	}
	m.Init(2)
	b := filepath.Join(dir, "other.safetensors")
	if err := m.StateDict().WriteFileAtomic(b); err != nil {
		t.Fatal(err)
	}
	evalJSON := func(ckpt, source, name string) string {
		p := filepath.Join(dir, name)
		if _, err := run(t, "eval", "--checkpoint", ckpt, "--source", source, "--dataset", "mnist", "--data-dir", dataDir,
			"--examples", "12", "--batch", "6", "--attack", "fgsm_76.5,pgd_76.5_25.5_3", "--threads", "1", "--json", p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ja, jb := evalJSON(a, b, "a.json"), evalJSON(b, a, "b.json")
	rb, _ := readEvalSummary(jb)
	wantBA := math.Min(rb.TransferResults[0].Accuracy, rb.TransferResults[1].Accuracy)
	ra, _ := readEvalSummary(ja)
	wantWhiteA := math.Min(ra.WhiteboxResults[0].Accuracy, ra.WhiteboxResults[1].Accuracy)
	strongJSON := writeReportFile(t, dir, "s.json", `{"suite":"strong","clean_accuracy":0.9,"whitebox_accuracy":0.1,"eps":0.3,"examples":12,
		"stages":[{"name":"apgd-ce","accuracy":0.1},{"name":"transfer:`+a+`","accuracy":0.1,"standalone_accuracy":0.625}]}`)
	// The source given through another spelling of the same path matches.
	aAlt := filepath.Join(dir, ".", "sub", "..", filepath.Base(a))
	out, err := run(t, "report", "--source", "A="+aAlt, "--source", "B="+b, "ma="+ja, "mb="+jb, "strong="+strongJSON)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out, "\n")
	if lines[0] != "| Defended model | Clean | White box | from A | from B | Worst black box |" {
		t.Fatalf("header %q\n%s", lines[0], out)
	}
	cells := func(line string) []string { return strings.Split(strings.Trim(line, "| "), " | ") }
	ma, mb, st := cells(lines[2]), cells(lines[3]), cells(lines[4])
	if ma[0] != "ma" || ma[2] != fmt.Sprintf("%.2f%%", 100*wantWhiteA) || ma[3] != "—" || ma[4] == "—" || ma[5] != ma[4] {
		t.Errorf("row ma: %q", ma)
	}
	if want := fmt.Sprintf("%.2f%%", 100*wantBA); mb[3] != want || mb[4] != "—" || mb[5] != want {
		t.Errorf("row mb: %q, want %s from A", mb, want)
	}
	if st[1] != "90.00%" || st[2] != "10.00%" || st[3] != "62.50%" || st[4] != "—" || st[5] != "62.50%" {
		t.Errorf("row strong: %q", st)
	}
	for want, args := range map[string][]string{
		"want LABEL=MODEL":            {"report", "--source", "nolabel", ja},
		"given twice":                 {"report", "--source", "A=" + a, "--source", "A=" + b, ja},
		"no run has transfer results": {"report", "--source", "C=" + filepath.Join(dir, "nope.safetensors"), ja, jb},
	} {
		if _, err := run(t, args...); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: got %v, want %q", args, err, want)
		}
	}
}

// TestEvalWarnsOfWeakAttack: the standard suite warns, on its output and in
// its JSON, when its attack has one start of 20 steps, naming the strong
// suite's command; 10 starts of 100 steps pass without a warning.
func TestEvalWarnsOfWeakAttack(t *testing.T) {
	dir := t.TempDir()
	dataDir, ckpt := writeStrongFixtures(t, dir)
	for _, c := range []struct {
		steps, restarts string
		warn            bool
	}{{"20", "1", true}, {"100", "10", false}} {
		jsonPath := filepath.Join(dir, "eval-"+c.steps+".json")
		out, err := run(t, "eval", "--checkpoint", ckpt, "--dataset", "mnist", "--data-dir", dataDir, "--examples", "4",
			"--steps", c.steps, "--restarts", c.restarts, "--threads", "1", "--json", jsonPath)
		if err != nil {
			t.Fatal(err)
		}
		var rep map[string]any
		b, _ := os.ReadFile(jsonPath)
		if err := json.Unmarshal(b, &rep); err != nil {
			t.Fatal(err)
		}
		// ε and the step size as written; accuracies in text as
		// percentages with two decimals, in JSON as fractions.
		for _, want := range []string{`"eps": 0.3,`, `"step_size": 0.01,`} {
			if !strings.Contains(string(b), want) {
				t.Errorf("JSON lacks %s:\n%s", want, b)
			}
		}
		clean := fmt.Sprintf("clean accuracy %.2f%% (top-5 %.2f%%)", 100*rep["clean_accuracy"].(float64), 100*rep["clean_top5_accuracy"].(float64))
		if !strings.Contains(out, clean) || !regexp.MustCompile(`white-box PGD-[^:]*: accuracy \d+\.\d\d% \(top-5 \d+\.\d\d%\)`).MatchString(out) {
			t.Errorf("output does not give accuracies as percentages (%q):\n%s", clean, out)
		}
		cmdLine := "logitpair eval --checkpoint " + ckpt + " --suite strong"
		w, _ := rep["warning"].(string)
		if c.warn && (!strings.Contains(out, "WARNING ") || !strings.Contains(out, cmdLine) || !strings.Contains(w, cmdLine)) {
			t.Errorf("%s steps × %s restarts: no warning naming %q:\n%s\nJSON warning %q", c.steps, c.restarts, cmdLine, out, w)
		}
		if !c.warn && (strings.Contains(out, "WARNING") || rep["warning"] != nil) {
			t.Errorf("%s steps × %s restarts: warned:\n%s\nJSON warning %q", c.steps, c.restarts, out, w)
		}
	}
}
