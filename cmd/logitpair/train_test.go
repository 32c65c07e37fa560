package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/logitpair/logitpair/pkg/checkpoint"
	"github.com/logitpair/logitpair/pkg/data"
	"github.com/logitpair/logitpair/pkg/data/datatest"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/safetensors"
	"github.com/logitpair/logitpair/pkg/tensor/cpu"
	"github.com/logitpair/logitpair/pkg/train"
)

// tinyALPRun writes 40 MNIST-format examples into a temporary folder and
// returns it, the run folder and the arguments of a tiny ALP training there
// (checkpoints and validation every 2 steps; the caller adds --steps).
func tinyALPRun(t *testing.T) (dataDir, out string, args []string) {
	dir := t.TempDir()
	dataDir, out = filepath.Join(dir, "mnist"), filepath.Join(dir, "run")
	os.MkdirAll(dataDir, 0o755)
	datatest.WriteMNIST(t, dataDir, 40, 1)
	args = []string{"train", "--dataset", "mnist", "--data-dir", dataDir, "--model-config", `{"conv1": 2, "conv2": 2, "hidden": 8}`,
		"--objective", "alp", "--attack-steps", "2", "--batch", "4", "--threads", "1", "--log-every", "2",
		"--checkpoint-every", "2", "--out", out, "--validate-every", "2", "--validate-examples", "8"}
	return dataDir, out, args
}

func TestTrainResumeAndEval(t *testing.T) {
	dataDir, out, args := tinyALPRun(t)
	text, err := run(t, append(args, "--steps", "2")...)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "step 2/2") || !strings.Contains(text, "adv acc") {
		t.Fatalf("no progress line:\n%s", text)
	}
	if _, err := run(t, append(args, "--steps", "4", "--resume")...); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ckpt-00000004.safetensors", "ckpt-00000004.state.safetensors", "latest.json", "best.safetensors"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("missing %s: %v", f, err)
		}
	}
	jsonPath := filepath.Join(t.TempDir(), "eval.json")
	ck := filepath.Join(out, "ckpt-00000004.safetensors")
	if _, err := run(t, "eval", "--checkpoint", ck, "--dataset", "mnist", "--data-dir", dataDir, "--examples", "10",
		"--steps", "3", "--target", "true,least-likely", "--source", ck, "--threads", "1", "--json", jsonPath); err != nil {
		t.Fatal(err)
	}
	var rep map[string]any
	b, _ := os.ReadFile(jsonPath)
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"clean_accuracy", "whitebox_accuracy", "transfer_accuracy", "whitebox", "transfer"} {
		if _, ok := rep[k]; !ok {
			t.Errorf("eval JSON lacks %s: %s", k, b)
		}
	}
	if wb := rep["whitebox"].([]any); len(wb) != 2 || wb[1].(map[string]any)["target"] != "least-likely" {
		t.Errorf("whitebox entries %v", wb)
	}
	// The checkpoint's compute accounting, carried across the resume: 4
	// steps of 4 examples, ALP with PGD-2 (4 forward and 4 backward passes
	// per example), 40 training examples.
	var got struct{ Compute *checkpoint.Compute }
	if err := json.Unmarshal(b, &got); err != nil || got.Compute == nil {
		t.Fatalf("eval JSON has no compute (%v): %s", err, b)
	}
	c := *got.Compute
	if !(c.WallSeconds > 0) {
		t.Errorf("wall time %v", c.WallSeconds)
	}
	c.WallSeconds = 0
	if want := (checkpoint.Compute{Steps: 4, ExamplesSeen: 16, ForwardPasses: 64, BackwardPasses: 64, DatasetSize: 40,
		ForwardPerExample: 1.6, BackwardPerExample: 1.6, PassesPerExample: 3.2}); c != want {
		t.Errorf("compute %+v, want %+v", c, want)
	}
}

func TestTrainAndEvalErrors(t *testing.T) {
	dir := t.TempDir()
	cases := map[string][]string{
		"unknown model":                {"train", "--model", "lenet", "--out", dir},
		"unknown objective":            {"train", "--objective", "alp2", "--out", dir},
		"λ must be":                    {"train", "--pair-weight", "-1", "--out", dir},
		"eps must be in (0, 1]":        {"train", "--eps", "2", "--out", dir},
		"step size must be positive":   {"train", "--step-size", "0", "--out", dir},
		"unknown dataset":              {"train", "--dataset", "imagenet-22k", "--data-dir", dir, "--out", dir},
		"--checkpoint is required":     {"eval"},
		"no logitpair metadata":        {"eval", "--checkpoint", writeBareFile(t, dir)},
		"want a JSON object":           {"train", "--model-config", "width=3"},
		"no such file or directory":    {"train", "--config", filepath.Join(dir, "missing.yaml")},
		"no checkpoint to resume from": {"train", "--dataset", "mnist", "--data-dir", writeData(t, dir), "--resume", "--out", filepath.Join(dir, "empty")},
	}
	for want, args := range cases {
		if _, err := run(t, args...); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: got %v, want %q", args, err, want)
		}
	}
}

func writeData(t *testing.T, dir string) string {
	d := filepath.Join(dir, "mnist")
	os.MkdirAll(d, 0o755)
	datatest.WriteMNIST(t, d, 4, 1)
	return d
}

// writeBareFile writes a safetensors file without logitpair metadata.
func writeBareFile(t *testing.T, dir string) string {
	p := filepath.Join(dir, "bare.safetensors")
	hdr := []byte(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`)
	for len(hdr)%8 != 0 {
		hdr = append(hdr, ' ')
	}
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(hdr)))
	b = append(append(b, hdr...), 0, 0, 0, 0)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// stHeader reads a safetensors file's JSON header by hand (8-byte
// little-endian length, then JSON) and returns its __metadata__.
func stHeader(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 8 {
		t.Fatalf("%s: %d bytes", path, len(b))
	}
	n := binary.LittleEndian.Uint64(b[:8])
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(b[8:8+n], &hdr); err != nil {
		t.Fatalf("%s: header: %v", path, err)
	}
	var meta map[string]string
	if err := json.Unmarshal(hdr["__metadata__"], &meta); err != nil {
		t.Fatalf("%s: metadata: %v", path, err)
	}
	return meta
}

// tensorsOf returns a model file's tensors by name.
func tensorsOf(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := safetensors.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, x := range f.Tensors {
		out[x.Name] = x.Data
	}
	return out
}

func sameWeights(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !bytes.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// TestTrainFlagsOverrideConfigFile: for a YAML and a JSON --config, the
// flags given win (steps, objective, eps, out), the file's other keys are
// used (batch, lr, model-config, data), and the checkpoint's metadata —
// read from the safetensors header — names the model, its config, the
// dataset, the objective, the step and the effective training config.
func TestTrainFlagsOverrideConfigFile(t *testing.T) {
	dir := t.TempDir()
	dataDir := writeData(t, dir)
	for _, format := range []string{"yaml", "json"} {
		fileOut, flagOut := filepath.Join(dir, format+"-file-out"), filepath.Join(dir, format+"-flag-out")
		var text string
		if format == "yaml" {
			text = fmt.Sprintf("dataset: mnist\ndata-dir: %s\nmodel-config: {conv1: 2, conv2: 2, hidden: 8}\nobjective: mpgd\nbatch: 3\nsteps: 5\n"+
				"attack-steps: 2\neps: 0.2\nlr: 0.002\nthreads: 1\nlog-every: 1\nout: %s\n", dataDir, fileOut)
		} else {
			text = fmt.Sprintf(`{"dataset": "mnist", "data-dir": %q, "model-config": {"conv1": 2, "conv2": 2, "hidden": 8}, "objective": "mpgd",
				"batch": 3, "steps": 5, "attack-steps": 2, "eps": 0.2, "lr": 0.002, "threads": 1, "log-every": 1, "out": %q}`, dataDir, fileOut)
		}
		cfgPath := filepath.Join(dir, "c."+format)
		os.WriteFile(cfgPath, []byte(text), 0o644)
		outText, err := run(t, "train", "--config", cfgPath, "--steps", "2", "--objective", "alp", "--eps", "0.1", "--out", flagOut)
		if err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		if !strings.Contains(outText, "with alp from step 0 to 2") {
			t.Fatalf("%s: output %s", format, outText)
		}
		if _, err := os.Stat(fileOut); !os.IsNotExist(err) {
			t.Fatalf("%s: the file's out %s was used (%v)", format, fileOut, err)
		}
		meta := stHeader(t, filepath.Join(flagOut, "ckpt-00000002.safetensors"))
		if meta["model"] != "madry-mnist" || meta["dataset"] != "mnist" || meta["objective"] != "alp" || meta["step"] != "2" {
			t.Fatalf("%s: metadata %v", format, meta)
		}
		var mc map[string]int
		if err := json.Unmarshal([]byte(meta["config"]), &mc); err != nil || mc["conv1"] != 2 || mc["hidden"] != 8 || mc["classes"] != 10 {
			t.Fatalf("%s: model config %q (%v)", format, meta["config"], err)
		}
		var tc train.Config
		if err := json.Unmarshal([]byte(meta["train_config"]), &tc); err != nil {
			t.Fatalf("%s: train_config %q: %v", format, meta["train_config"], err)
		}
		if tc.Steps != 2 || tc.Objective != "alp" || tc.Eps != 0.1 || tc.Out != flagOut || // flags
			tc.Batch != 3 || tc.LR != 0.002 || tc.AttackSteps != 2 || tc.DataDir != dataDir || tc.ModelConfig["conv2"] != 2 { // file
			t.Fatalf("%s: effective config %+v", format, tc)
		}
	}
}

// TestTrainInitFrom: `--init-from F` trains from F's weights: the CLI's
// step-1 checkpoint is bit for bit a library trainer's first step from F
// (whose own test proves it starts exactly at F), and differs from the same
// run without --init-from.
func TestTrainInitFrom(t *testing.T) {
	dir := t.TempDir()
	dataDir := writeData(t, dir)
	mcfg := models.Config{"conv1": 2, "conv2": 2, "hidden": 8}
	be := cpu.New(cpu.Options{Threads: 1})
	src, err := models.New(be, "madry-mnist", mcfg)
	if err != nil {
		t.Fatal(err)
	}
	src.Init(77)
	initPath := filepath.Join(dir, "init.safetensors")
	if err := src.StateDict().WriteFileAtomic(initPath); err != nil {
		t.Fatal(err)
	}
	args := []string{"train", "--dataset", "mnist", "--data-dir", dataDir, "--model-config", `{"conv1": 2, "conv2": 2, "hidden": 8}`,
		"--objective", "plain", "--batch", "4", "--steps", "1", "--optimizer", "sgd", "--lr", "0.1", "--threads", "1", "--device", "cpu", "--log-every", "0"}
	out := filepath.Join(dir, "run")
	if _, err := run(t, append(args, "--init-from", initPath, "--out", out)...); err != nil {
		t.Fatal(err)
	}
	got := tensorsOf(t, filepath.Join(out, "ckpt-00000001.safetensors"))

	c := train.DefaultConfig()
	c.Dataset, c.DataDir, c.ModelConfig, c.Objective, c.Batch, c.Steps = "mnist", dataDir, mcfg, "plain", 4, 1
	c.Optimizer, c.LR, c.Threads, c.LogEvery, c.InitFrom, c.Out = "sgd", 0.1, 1, 0, initPath, filepath.Join(dir, "lib")
	ds, err := data.Load("mnist", dataDir, "train")
	if err != nil {
		t.Fatal(err)
	}
	tr, err := train.NewTrainer(be, c, data.NewLoader(ds, data.LoaderOptions{Seed: uint64(c.Seed), NoAugment: !c.Augment}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.TrainStep(); err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{}
	for _, x := range tr.W.Model.StateDict().Tensors {
		want[x.Name] = x.Data
	}
	if !sameWeights(got, want) {
		t.Fatal("the CLI's first step from --init-from differs from the library's")
	}
	if sameWeights(got, tensorsOf(t, initPath)) {
		t.Fatal("no step was taken")
	}
	scratch := filepath.Join(dir, "scratch")
	if _, err := run(t, append(args, "--out", scratch)...); err != nil {
		t.Fatal(err)
	}
	if sameWeights(got, tensorsOf(t, filepath.Join(scratch, "ckpt-00000001.safetensors"))) {
		t.Fatal("--init-from made no difference")
	}
}

// TestTrainBestIsTheBestLoggedValidation: with a validation and a
// checkpoint every 2 steps, best.safetensors is the checkpoint of the step
// with the highest logged robust accuracy (the first, on ties).
func TestTrainBestIsTheBestLoggedValidation(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "mnist")
	datatest.WriteMNIST(t, dataDir, 80, 3)
	out := filepath.Join(dir, "run")
	text, err := run(t, "train", "--dataset", "mnist", "--data-dir", dataDir, "--model-config", `{"conv1": 4, "conv2": 8, "hidden": 32}`,
		"--objective", "plain", "--attack-steps", "1", "--eps", "0.02", "--step-size", "0.02", "--batch", "16", "--steps", "8", "--optimizer", "adam",
		"--lr", "0.01", "--threads", "1", "--log-every", "0", "--checkpoint-every", "2", "--keep", "10",
		"--validate-every", "2", "--validate-examples", "40", "--out", out)
	if err != nil {
		t.Fatal(err)
	}
	bestStep, bestAcc, n := -1, -1.0, 0
	lastStep, lastAcc := -1, -1.0
	for _, line := range strings.Split(text, "\n") {
		var step int
		var clean, robust float64
		if _, err := fmt.Sscanf(line, "validation at step %d: clean %f%%, robust %f%%", &step, &clean, &robust); err == nil {
			n++
			lastStep, lastAcc = step, robust
			if robust > bestAcc {
				bestStep, bestAcc = step, robust
			}
		}
	}
	if n != 4 {
		t.Fatalf("%d validation lines:\n%s", n, text)
	}
	meta := stHeader(t, filepath.Join(out, "best.safetensors"))
	if meta["step"] != fmt.Sprint(bestStep) {
		t.Fatalf("best.safetensors is step %s, the best logged validation step %d:\n%s", meta["step"], bestStep, text)
	}
	ck := filepath.Join(out, fmt.Sprintf("ckpt-%08d.safetensors", bestStep))
	if !sameWeights(tensorsOf(t, filepath.Join(out, "best.safetensors")), tensorsOf(t, ck)) {
		t.Fatalf("best.safetensors differs from %s", ck)
	}
	// With these settings the last validation (step 8) is below step 6's, so
	// an overwrite by a worse validation fails the check above; the
	// trainer's own test drives that case with chosen accuracies.
	t.Logf("best step %d, robust accuracy %v (last validation: step %d, robust %v)", bestStep, bestAcc, lastStep, lastAcc)
}

// TestTrainBadInputLeavesNoFiles: every rejected input fails before
// anything is written to --out (which is not even created).
func TestTrainBadInputLeavesNoFiles(t *testing.T) {
	dir := t.TempDir()
	dataDir := writeData(t, dir)
	other := filepath.Join(dir, "resnet9.safetensors")
	r9, _ := models.New(cpu.New(cpu.Options{Threads: 1}), "resnet9", models.Config{"width": 2})
	if err := r9.StateDict().WriteFileAtomic(other); err != nil {
		t.Fatal(err)
	}
	tiny := filepath.Join(dir, "tiny")
	datatest.WriteTinyImageNet(t, tiny, []string{"n01", "n02"}, 1, 1, 8, 8)
	os.Remove(filepath.Join(tiny, "val", "images", "val_1.JPEG"))
	cases := []struct {
		want string
		args []string
	}{
		{"unknown model", []string{"--model", "lenet"}},
		{"unknown dataset", []string{"--dataset", "imagenet-22k"}},
		{"unknown objective", []string{"--objective", "alp2"}},
		{"λ must be", []string{"--pair-weight", "-0.5"}},
		{"eps must be in (0, 1]", []string{"--eps", "0"}},
		{"eps must be in (0, 1]", []string{"--eps", "1.5"}},
		{"step size must be positive", []string{"--step-size", "0"}},
		{"step size must be positive", []string{"--step-size", "-0.01"}},
		{"holds a resnet9", []string{"--init-from", other}},
		{"images are 1×28×28, model resnet9 expects 3×32×32", []string{"--model", "resnet9", "--model-config", `{"width": 2}`}},
		{"val_1.JPEG", []string{"--dataset", "tiny-imagenet", "--data-dir", tiny, "--model", "resnet-v2-50",
			"--model-config", `{"width": 1, "classes": 2, "image_size": 8}`, "--validate-every", "1"}},
	}
	for i, c := range cases {
		out := filepath.Join(dir, fmt.Sprintf("out%d", i))
		args := append([]string{"train", "--dataset", "mnist", "--data-dir", dataDir, "--model-config", `{"conv1": 2, "conv2": 2, "hidden": 8}`,
			"--batch", "2", "--steps", "1", "--attack-steps", "1", "--threads", "1", "--out", out}, c.args...)
		if _, err := run(t, args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want %q", c.args, err, c.want)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			entries, _ := os.ReadDir(out)
			t.Errorf("%v: --out exists after the error (%v, %d entries)", c.args, err, len(entries))
		}
	}
}

// TestTrainAndEvalImageFolders trains a tiny resnet-v2-50 (width 1,
// image_size 32) for two steps on generated Tiny ImageNet and imagefolder
// trees (48×40 JPEGs and PNGs, resized and center-cropped to 32×32) with
// validation, and evaluates the checkpoint; a corrupt image and a missing
// label are errors naming the file.
func TestTrainAndEvalImageFolders(t *testing.T) {
	dir := t.TempDir()
	tiny := filepath.Join(dir, "tiny")
	datatest.WriteTinyImageNet(t, tiny, []string{"n02", "n01"}, 3, 2, 40, 48)
	folder := filepath.Join(dir, "folder")
	datatest.WriteImageFolder(t, folder, []string{"train", "val"}, []string{"cat", "dog", "eel"}, 2, 36, 36, false)
	for _, c := range []struct {
		dataset, dataDir string
		classes          int
	}{{"tiny-imagenet", tiny, 2}, {"imagefolder", folder, 3}} {
		out := filepath.Join(dir, c.dataset+"-run")
		mc := fmt.Sprintf(`{"width": 1, "classes": %d, "image_size": 32}`, c.classes)
		text, err := run(t, "train", "--dataset", c.dataset, "--data-dir", c.dataDir, "--model", "resnet-v2-50", "--model-config", mc,
			"--objective", "alp", "--eps", "0.03", "--step-size", "0.01", "--attack-steps", "1", "--batch", "2", "--steps", "2",
			"--optimizer", "sgd", "--lr", "0.01", "--threads", "1", "--log-every", "1", "--validate-every", "2", "--validate-examples", "4", "--out", out)
		if err != nil {
			t.Fatalf("%s: %v", c.dataset, err)
		}
		if !strings.Contains(text, "step 2/2") || !strings.Contains(text, "validation at step 2") {
			t.Fatalf("%s: output\n%s", c.dataset, text)
		}
		ck := filepath.Join(out, "ckpt-00000002.safetensors")
		if meta := stHeader(t, ck); meta["dataset"] != c.dataset || meta["model"] != "resnet-v2-50" {
			t.Fatalf("%s: metadata %v", c.dataset, meta)
		}
		jsonPath := filepath.Join(dir, c.dataset+".json")
		if _, err := run(t, "eval", "--checkpoint", ck, "--dataset", c.dataset, "--data-dir", c.dataDir, "--examples", "4",
			"--eps", "0.03", "--step-size", "0.01", "--steps", "1", "--threads", "1", "--json", jsonPath); err != nil {
			t.Fatalf("%s eval: %v", c.dataset, err)
		}
		var rep map[string]any
		b, _ := os.ReadFile(jsonPath)
		if err := json.Unmarshal(b, &rep); err != nil || rep["examples"] != float64(4) || rep["whitebox_accuracy"] == nil {
			t.Fatalf("%s eval JSON %s (%v)", c.dataset, b, err)
		}
	}
	// A corrupt training image is named.
	bad := datatest.WriteFile(t, folder, "train/dog/zz.png", []byte("\x89PNG\r\n\x1a\nbroken"))
	_, err := run(t, "train", "--dataset", "imagefolder", "--data-dir", folder, "--model", "resnet-v2-50",
		"--model-config", `{"width": 1, "classes": 3, "image_size": 32}`, "--steps", "1", "--batch", "2", "--threads", "1", "--out", filepath.Join(dir, "bad"))
	if err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("corrupt image: %v", err)
	}
	// A validation image without a label: the label file names it.
	datatest.WriteFile(t, tiny, "val/val_annotations.txt", []byte("val_0.JPEG\tn01\t0\t0\t1\t1\nval_1.JPEG\n"))
	_, err = run(t, "eval", "--checkpoint", filepath.Join(dir, "tiny-imagenet-run", "ckpt-00000002.safetensors"), "--dataset", "tiny-imagenet",
		"--data-dir", tiny, "--examples", "2", "--steps", "1", "--threads", "1")
	if err == nil || !strings.Contains(err.Error(), "val_annotations.txt") || !strings.Contains(err.Error(), "offset 23") {
		t.Fatalf("missing label: %v", err)
	}
}

// TestTrainOutHoldsAnotherRun: a new run refuses an --out that holds
// another run's checkpoints; --force replaces exactly that run's files,
// after every flag has been checked, and leaves the folder's other files;
// --force and --resume exclude each other.
func TestTrainOutHoldsAnotherRun(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "run")
	args := []string{"train", "--dataset", "mnist", "--data-dir", writeData(t, dir), "--model-config", `{"conv1": 2, "conv2": 2, "hidden": 8}`,
		"--objective", "plain", "--batch", "2", "--threads", "1", "--log-every", "0", "--out", out}
	if _, err := run(t, append(args, "--steps", "2")...); err != nil {
		t.Fatal(err)
	}
	notes := filepath.Join(out, "notes.txt")
	os.WriteFile(notes, []byte("mine"), 0o644)
	before := tensorsOf(t, filepath.Join(out, "ckpt-00000002.safetensors"))
	for _, c := range []struct {
		want string
		args []string
	}{
		{"holds the checkpoints of another run (newest step 2", []string{"--steps", "1"}},
		{"exclude each other", []string{"--steps", "1", "--force", "--resume"}},
		{"--batch must be at least 1", []string{"--steps", "1", "--force", "--batch", "0"}},
		{"unknown dataset", []string{"--steps", "1", "--force", "--dataset", "imagenet-22k"}},
	} {
		if _, err := run(t, append(args, c.args...)...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want %q", c.args, err, c.want)
		}
		if !sameWeights(before, tensorsOf(t, filepath.Join(out, "ckpt-00000002.safetensors"))) {
			t.Fatalf("%v: the earlier run's checkpoint changed", c.args)
		}
	}
	if _, err := run(t, append(args, "--steps", "1", "--force")...); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, "ckpt-00000002.safetensors")); !os.IsNotExist(err) {
		t.Fatalf("the replaced run's checkpoint is still there (%v)", err)
	}
	if p, err := checkpoint.ReadPointer(out); err != nil || p.Step != 1 {
		t.Fatalf("latest.json %+v %v, want the new run's step 1", p, err)
	}
	if b, err := os.ReadFile(notes); err != nil || string(b) != "mine" {
		t.Fatalf("--force touched an unrelated file: %q %v", b, err)
	}
}

// TestTrainResumeCorruptNewest: --resume with a damaged newest checkpoint
// fails naming it and the newest intact one, deleting nothing; --resume-from
// that step continues the run.
func TestTrainResumeCorruptNewest(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "run")
	args := []string{"train", "--dataset", "mnist", "--data-dir", writeData(t, dir), "--model-config", `{"conv1": 2, "conv2": 2, "hidden": 8}`,
		"--objective", "plain", "--batch", "2", "--threads", "1", "--log-every", "0", "--checkpoint-every", "2", "--out", out}
	if _, err := run(t, append(args, "--steps", "4")...); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(out, "ckpt-00000004.state.safetensors")
	if err := os.WriteFile(state, []byte("not a safetensors file"), 0o644); err != nil {
		t.Fatal(err)
	}
	names := func() []string {
		entries, _ := os.ReadDir(out)
		var s []string
		for _, e := range entries {
			s = append(s, e.Name())
		}
		return s
	}
	files := names()
	_, err := run(t, append(args, "--steps", "6", "--resume")...)
	for _, want := range []string{"the newest checkpoint in " + out + ", step 4, is corrupt", "ckpt-00000004.state.safetensors",
		"the newest intact checkpoint is step 2", "--resume-from 2"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--resume: %v, want it to say %q", err, want)
		}
	}
	if got := names(); strings.Join(got, " ") != strings.Join(files, " ") {
		t.Fatalf("files %v after the failed resume, before %v", got, files)
	}
	text, err := run(t, append(args, "--steps", "6", "--resume-from", "2")...)
	if err != nil || !strings.Contains(text, "from step 2 to 6") {
		t.Fatalf("--resume-from 2: %v\n%s", err, text)
	}
	if p, err := checkpoint.ReadPointer(out); err != nil || p.Step != 6 {
		t.Fatalf("latest.json %+v %v", p, err)
	}
}

// TestTrainSentinel: --sentinel-every without --validate-every opens the
// test split for the checks, prints a line per check and sums the sentinel
// up at the end; a bad sentinel flag is refused by name.
func TestTrainSentinel(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "mnist")
	os.MkdirAll(dataDir, 0o755)
	datatest.WriteMNIST(t, dataDir, 40, 1)
	args := []string{"train", "--dataset", "mnist", "--data-dir", dataDir, "--model-config", `{"conv1": 2, "conv2": 2, "hidden": 8}`,
		"--objective", "alp", "--attack-steps", "2", "--batch", "4", "--threads", "1", "--log-every", "0", "--steps", "4",
		"--out", filepath.Join(dir, "run"), "--sentinel-every", "2", "--sentinel-examples", "8", "--sentinel-steps", "3"}
	text, err := run(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"sentinel at step 2: clean", "sentinel at step 4: clean", "multi-step", "sentinel: 0 rollbacks, learning rate scale 1, last check at step 4"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if _, err := run(t, append(args, "--force", "--sentinel-lr-factor", "0")...); err == nil || !strings.Contains(err.Error(), "--sentinel-lr-factor") {
		t.Fatalf("--sentinel-lr-factor 0: %v", err)
	}
}
