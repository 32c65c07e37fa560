package main

import (
	"bytes"
	"encoding/json"
	"maps"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestBenchStepJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.json")
	if _, err := run(t, "bench", "step", "--batch", "2", "--steps", "2", "--warmup", "0", "--threads", "1", "--json", path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r map[string]any
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"model", "batch", "threads", "ms_per_step", "allocs_per_step"} {
		if _, ok := r[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, b)
		}
	}
	if r["model"] != "madry-mnist" || r["batch"].(float64) != 2 {
		t.Errorf("unexpected JSON %s", b)
	}
	// '-' writes the JSON alone to standard output.
	out, err := run(t, "bench", "step", "--batch", "1", "--steps", "1", "--warmup", "0", "--threads", "1", "--input-grad-only", "--json", "-")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || r["input_grad_only"] != true {
		t.Fatalf("stdout is not the JSON result: %q (%v)", out, err)
	}
}

func TestBenchStepErrors(t *testing.T) {
	if _, err := run(t, "bench", "step", "--model", "vgg"); err == nil || !strings.Contains(err.Error(), "unknown model") {
		t.Fatalf("unknown model: %v", err)
	}
	if _, err := run(t, "bench", "step", "--batch", "0"); err == nil || !strings.Contains(err.Error(), "batch") {
		t.Fatalf("batch 0: %v", err)
	}
}

// --model-config changes the benchmarked model (echoed in the JSON with its
// defaults), samples/s is batch over the step time, and --cpuprofile writes
// a Go CPU profile.
func TestBenchTrainStepModelConfigAndProfile(t *testing.T) {
	dir := t.TempDir()
	prof := filepath.Join(dir, "cpu.prof")
	out, err := run(t, "bench", "train-step", "--model-config", `{"conv1": 2, "conv2": 2, "hidden": 8}`, "--batch", "2",
		"--attack-steps", "1", "--steps", "1", "--warmup", "0", "--threads", "1", "--json", "-", "--cpuprofile", prof)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		ModelConfig   map[string]int `json:"model_config"`
		Batch         int            `json:"batch"`
		MsPerStep     float64        `json:"ms_per_step"`
		SamplesPerSec float64        `json:"samples_per_s"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("stdout is not the JSON result: %q (%v)", out, err)
	}
	if want := map[string]int{"conv1": 2, "conv2": 2, "hidden": 8, "classes": 10}; !maps.Equal(r.ModelConfig, want) {
		t.Errorf("model_config %v, want %v", r.ModelConfig, want)
	}
	if got, want := r.SamplesPerSec, float64(r.Batch)*1000/r.MsPerStep; math.Abs(got-want) > 1e-9*want {
		t.Errorf("samples_per_s %v, want batch/ms = %v", got, want)
	}
	if fi, err := os.Stat(prof); err != nil || fi.Size() == 0 {
		t.Errorf("--cpuprofile wrote no profile: %v", err)
	}
	if _, err := run(t, "bench", "step", "--model-config", "width=3"); err == nil || !strings.Contains(err.Error(), "JSON") {
		t.Errorf("a --model-config that is not JSON: %v", err)
	}
}
