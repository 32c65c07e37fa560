package checkpoint

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"

	"github.com/logitpair/logitpair/pkg/atomicfile"
	"github.com/logitpair/logitpair/pkg/safetensors"
)

// BestModelFile is local training's best model by robust validation
// accuracy, BestFile the validation that made it the best.
const (
	BestModelFile = "best.safetensors"
	BestFile      = "best.json"
)

// Best is BestFile's content. The fields are in the order of their JSON
// names, the order in which the file has always been written.
type Best struct {
	Attack         string  `json:"attack"`
	CleanAccuracy  float64 `json:"clean_accuracy"`
	RobustAccuracy float64 `json:"robust_accuracy"`
	Step           int64   `json:"step"`
}

// WriteBest writes model file f as dir/best.safetensors, with b's
// accuracies added to its metadata, and then b as dir/best.json.
func WriteBest(dir string, f *safetensors.File, b Best) error {
	f.Metadata["robust_accuracy"] = strconv.FormatFloat(b.RobustAccuracy, 'f', 6, 64)
	f.Metadata["clean_accuracy"] = strconv.FormatFloat(b.CleanAccuracy, 'f', 6, 64)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := f.WriteFileAtomic(filepath.Join(dir, BestModelFile)); err != nil {
		return err
	}
	j, _ := json.Marshal(b)
	return atomicfile.Write(filepath.Join(dir, BestFile), append(j, '\n'), 0o644)
}

// ReadBest reads dir/best.json; ok is false when there is none or it does
// not parse (a run then starts its search for the best model afresh).
func ReadBest(dir string) (b Best, ok bool) {
	j, err := os.ReadFile(filepath.Join(dir, BestFile))
	if err != nil {
		return Best{}, false
	}
	if json.Unmarshal(j, &b) != nil {
		return Best{}, false
	}
	return b, true
}
