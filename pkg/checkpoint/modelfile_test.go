package checkpoint

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/logitpair/logitpair/pkg/safetensors"
)

// TestReadModelFileNamesTheMistake: each file a user may give by mistake
// where a model is expected gets an error naming it and the file to give.
func TestReadModelFileNamesTheMistake(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, meta map[string]string) string {
		f := safetensors.New()
		for k, v := range meta {
			f.Metadata[k] = v
		}
		if err := f.AddF32("w", []int{1}, []float32{1}); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := f.WriteFileAtomic(p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	model := write(ModelFileName(5), map[string]string{"model": "madry-mnist", "step": "5"})
	state := write(StateFileName(5), map[string]string{"format": stateFormat, "step": "5"})
	orphan := write(StateFileName(3), map[string]string{"format": stateFormat, "step": "3"})
	shard := write("shard-0-000000000005.safetensors", map[string]string{"format": shardStateFormat})
	latest := filepath.Join(dir, PointerFile)
	if err := os.WriteFile(latest, []byte(`{"step": 5, "model": "ckpt-00000005.safetensors", "state": "ckpt-00000005.state.safetensors"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.safetensors")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, path string
		notST      bool
		want       []string
	}{
		{"latest.json", latest, true, []string{latest + " is not a safetensors file", "JSON?", "ckpt-NNNNNNNN.safetensors", "the newest there is " + model}},
		{"empty", empty, true, []string{empty + " is not a safetensors file (it is empty)"}},
		{"directory", dir, false, []string{dir + " is a directory", "the newest there is " + model}},
		{"optimizer state", state, false, []string{state + " is the optimizer state of the checkpoint of step 5", "give its model file, " + model}},
		{"orphan state", orphan, false, []string{"step 3", ModelFileName(3) + " (not in that folder; the newest there is " + model + ")"}},
		{"shard state", shard, false, []string{"shard state", "not a model"}},
	}
	for _, c := range cases {
		_, err := ReadModelFile(c.path)
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		if errors.Is(err, safetensors.ErrNotSafetensors) != c.notST {
			t.Errorf("%s: errors.Is(err, ErrNotSafetensors) = %v, want %v", c.name, !c.notST, c.notST)
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", c.name, err, w)
			}
		}
	}
	if f, err := ReadModelFile(model); err != nil || f.Metadata["model"] != "madry-mnist" {
		t.Errorf("the model file: %v", err)
	}
}
