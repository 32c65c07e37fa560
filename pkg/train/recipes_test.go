package train

import (
	"path/filepath"
	"testing"
)

// Every recipe in configs/ loads over the defaults (no unknown key) and is a
// valid configuration: the files users run as `train --config` stay in step
// with the code.
func TestRecipeFilesLoadAndValidate(t *testing.T) {
	files, err := filepath.Glob("../../configs/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("found %d recipes in configs/, want the fast, demo and paper ones", len(files))
	}
	for _, f := range files {
		c := DefaultConfig()
		if err := c.Load(f); err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", f, err)
		}
		if _, err := StepPasses(c); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
