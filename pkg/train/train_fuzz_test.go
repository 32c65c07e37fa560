package train

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// normalized maps the empty and the nil model config and static-model list
// to nil: JSON() omits both, so either reads back as nil.
func normalized(c Config) Config {
	if len(c.ModelConfig) == 0 {
		c.ModelConfig = nil
	}
	if len(c.StaticModels) == 0 {
		c.StaticModels = nil
	}
	return c
}

// FuzzConfigLoad reads a --config file (YAML or JSON) over the defaults.
// Load must either fail and leave the configuration as it was, or give one
// that JSON() writes out and Load reads back unchanged; Validate must answer
// for it (an error or nil), never panic.
func FuzzConfigLoad(f *testing.F) {
	f.Add([]byte(DefaultConfig().JSON()))
	f.Add([]byte("dataset: cifar10\nmodel: resnet9\nmodel-config: {width: 16}\nobjective: pgd\nattack: pgd_8_2_7\nlr-schedule: step:100:0.1\nbatch: 128\n"))
	f.Add([]byte("objective: ensemble-adv\nstatic-models: [a.safetensors, b.safetensors]\nrandom-eps: true\neps: 0.0625\n"))
	f.Add([]byte(`{"dataset": "svhn", "steps": 10, "ema": 0.999, "optimizer": "rmsprop", "lr-schedule": "warmup:5,cosine:100:0.1"}`))
	dir := f.TempDir()
	path, back := filepath.Join(dir, "run.yaml"), filepath.Join(dir, "back.json")
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		c := DefaultConfig()
		c.ModelConfig = map[string]int{"width": 8}
		c.StaticModels = []string{"keep.safetensors"}
		before := DefaultConfig()
		before.ModelConfig = map[string]int{"width": 8}
		before.StaticModels = []string{"keep.safetensors"}
		if err := c.Load(path); err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name the file", err)
			}
			if !reflect.DeepEqual(c, before) {
				t.Fatalf("a failed Load changed the configuration:\n%+v\nwas\n%+v", c, before)
			}
			return
		}
		_ = c.Validate()
		js := c.JSON()
		if js == "" {
			t.Fatalf("JSON() of a loaded configuration is empty: %+v", c)
		}
		if err := os.WriteFile(back, []byte(js), 0o644); err != nil {
			t.Fatal(err)
		}
		again := DefaultConfig()
		if err := again.Load(back); err != nil {
			t.Fatalf("Load of JSON() %s: %v", js, err)
		}
		if !reflect.DeepEqual(normalized(again), normalized(c)) {
			t.Fatalf("round trip changed the configuration:\n%+v\nbecame\n%+v", c, again)
		}
	})
}
