package checkpoint

import (
	"encoding/json"
	"fmt"
)

// MetaCompute is the model-file metadata key holding a run's compute
// accounting (Compute, as JSON).
const MetaCompute = "compute"

// Compute is the compute a run has spent up to a checkpoint, accumulated
// across resumes. A pass is one forward or one backward of a model on one
// example; the attack's input gradients count as backward passes
// (train.StepPasses has the count per objective).
type Compute struct {
	// WallSeconds is the training's wall time so far: the time spent in
	// the training loop (steps, checkpoints, validation) by this start and
	// every earlier one of the run.
	WallSeconds float64 `json:"wall_seconds"`
	// Steps is the number of optimizer steps taken.
	Steps int64 `json:"steps"`
	// ExamplesSeen is the training examples the steps drew: steps × batch ×
	// workers.
	ExamplesSeen int64 `json:"examples_seen"`
	// ForwardPasses and BackwardPasses are the passes the training steps
	// spent in total (robust validation's attacks are not counted).
	ForwardPasses  int64 `json:"forward_passes"`
	BackwardPasses int64 `json:"backward_passes"`
	// DatasetSize is the number of examples of the training set; zero
	// (absent) when it is unknown, and then so are the per-example counts.
	DatasetSize int `json:"dataset_size,omitempty"`
	// ForwardPerExample, BackwardPerExample and PassesPerExample (forward
	// and backward together) are the totals divided by DatasetSize: passes
	// per example of the training set. Madry et al.'s MNIST training (PGD-40,
	// 100,000 steps of 50 on 60,000 examples) is ≈3,417 forward and as many
	// backward passes per example (the ≈3,400 the issue compares with), so
	// ≈6,833 passes per example.
	ForwardPerExample  float64 `json:"forward_per_example,omitempty"`
	BackwardPerExample float64 `json:"backward_per_example,omitempty"`
	PassesPerExample   float64 `json:"passes_per_example,omitempty"`
}

// WithDataset returns c with DatasetSize n and the per-example counts
// computed from the totals (left out when n < 1).
func (c Compute) WithDataset(n int) Compute {
	c.DatasetSize, c.ForwardPerExample, c.BackwardPerExample, c.PassesPerExample = 0, 0, 0, 0
	if n < 1 {
		return c
	}
	c.DatasetSize = n
	c.ForwardPerExample = float64(c.ForwardPasses) / float64(n)
	c.BackwardPerExample = float64(c.BackwardPasses) / float64(n)
	c.PassesPerExample = float64(c.ForwardPasses+c.BackwardPasses) / float64(n)
	return c
}

// JSON returns c as the metadata value of MetaCompute.
func (c Compute) JSON() string {
	b, _ := json.Marshal(c)
	return string(b)
}

// ReadCompute returns the compute accounting in a model file's metadata:
// nil when the file has none (written before the key existed, or not by
// logitpair), an error when the value is not a Compute.
func ReadCompute(meta map[string]string) (*Compute, error) {
	s, ok := meta[MetaCompute]
	if !ok {
		return nil, nil
	}
	var c Compute
	if err := json.Unmarshal([]byte(s), &c); err != nil {
		return nil, fmt.Errorf("metadata %q: %w", MetaCompute, err)
	}
	return &c, nil
}
