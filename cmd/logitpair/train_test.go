package main

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/logitpair/logitpair/pkg/data/datatest"
)

func TestTrainResumeAndEval(t *testing.T) {
	dir := t.TempDir()
	dataDir, out := filepath.Join(dir, "mnist"), filepath.Join(dir, "run")
	os.MkdirAll(dataDir, 0o755)
	datatest.WriteMNIST(t, dataDir, 40, 1)
	args := []string{"train", "--dataset", "mnist", "--data-dir", dataDir, "--model-config", `{"conv1": 2, "conv2": 2, "hidden": 8}`,
		"--objective", "alp", "--attack-steps", "2", "--batch", "4", "--threads", "1", "--log-every", "2",
		"--checkpoint-every", "2", "--out", out, "--validate-every", "2", "--validate-examples", "8"}
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
	jsonPath := filepath.Join(dir, "eval.json")
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
