package checkpoint

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/logitpair/logitpair/pkg/safetensors"
)

// shardStateFormat is the format metadata of a parameter server's shard
// state (pkg/paramserver's FileStore writes it).
const shardStateFormat = "logitpair-shard-state-v1"

// ReadModelFile reads the model file at path for loading into a model
// (eval --checkpoint and --source, train --init-from and --static-models).
// Beyond safetensors.ReadFile's errors it names the usual mistakes and the
// file to give instead: a directory or a file that is not safetensors (such
// as latest.json), whose error wraps safetensors.ErrNotSafetensors; an
// optimizer state (ckpt-NNNNNNNN.state.safetensors); a parameter server's
// shard state.
func ReadModelFile(path string) (*safetensors.File, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return nil, fmt.Errorf("%s is a directory, not a model file: a logitpair checkpoint's model is ckpt-NNNNNNNN.safetensors%s", path, newestModel(path))
	}
	f, err := safetensors.ReadFile(path)
	if errors.Is(err, safetensors.ErrNotSafetensors) {
		return nil, fmt.Errorf("%w; a logitpair checkpoint's model is ckpt-NNNNNNNN.safetensors%s", err, newestModel(filepath.Dir(path)))
	}
	if err != nil {
		return nil, err
	}
	switch f.Metadata["format"] {
	case stateFormat:
		step, err := strconv.ParseInt(f.Metadata["step"], 10, 64)
		if err != nil {
			step, _ = stepOf(filepath.Base(path))
		}
		model := filepath.Join(filepath.Dir(path), ModelFileName(step))
		note := ""
		if _, err := os.Stat(model); err != nil {
			note = " (not in that folder" + newestModel(filepath.Dir(path)) + ")"
		}
		return nil, fmt.Errorf("%s is the optimizer state of the checkpoint of step %d (optimizer slots and EMA, no model): give its model file, %s%s", path, step, model, note)
	case shardStateFormat:
		return nil, fmt.Errorf("%s is a parameter server's shard state (a slice of the parameters and the optimizer slots), not a model: give one of the coordinator's model files, ckpt-NNNNNNNN.safetensors in the run directory", path)
	}
	return f, nil
}

// newestModel is ": the newest is DIR/ckpt-….safetensors" for the model
// file dir's latest.json points at, or "" when dir holds no run.
func newestModel(dir string) string {
	p, err := ReadPointer(dir)
	if err != nil {
		return ""
	}
	return "; the newest there is " + filepath.Join(dir, p.Model)
}
