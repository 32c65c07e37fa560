package train

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigLoadRefusesDuplicateKeys: a key given twice in a YAML or JSON
// config file is an error naming the key and its line, not a silent "last
// one wins"; c is left unchanged.
func TestConfigLoadRefusesDuplicateKeys(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, text string
		want       []string
	}{
		{"yaml", "steps: 30\nlr: 0.1\nsteps: 40\n", []string{`line 3: key "steps" given again`}},
		{"json", "{\"steps\": 30,\n \"steps\": 40}\n", []string{`line 2: key "steps" given again`}},
		{"nested", "model-config:\n  conv1: 2\n  conv1: 3\n", []string{`line 3: key "conv1" given again`}},
		{"two", "lr: 0.1\nsteps: 30\nlr: 0.2\nsteps: 40\n", []string{`line 3: key "lr"`, `line 4: key "steps"`}},
	}
	for _, c := range cases {
		p := filepath.Join(dir, c.name+".yaml")
		if err := os.WriteFile(p, []byte(c.text), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := DefaultConfig()
		err := cfg.Load(p)
		if err == nil {
			t.Errorf("%s: a duplicate key was accepted (steps %d)", c.name, cfg.Steps)
			continue
		}
		for _, w := range append(c.want, "config "+p+": duplicate key") {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", c.name, err, w)
			}
		}
		if cfg.Steps != DefaultConfig().Steps || cfg.LR != DefaultConfig().LR {
			t.Errorf("%s: the refused file changed the config", c.name)
		}
	}
	// Keys once each, and the same key in two maps, load.
	p := filepath.Join(dir, "ok.yaml")
	if err := os.WriteFile(p, []byte("steps: 30\nmodel-config:\n  classes: 10\nlr: 0.5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	if err := cfg.Load(p); err != nil || cfg.Steps != 30 || cfg.LR != 0.5 {
		t.Errorf("valid file: %v (steps %d, lr %v)", err, cfg.Steps, cfg.LR)
	}
}
