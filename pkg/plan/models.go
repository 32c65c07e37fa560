package plan

import (
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/tensor/cpu"
)

// Size is what a step moves per worker: the trainable parameters S (the
// flat vector the shards split, models.Model.FlatLayout) and the float
// buffer elements B (batch-norm running statistics, pulled and pushed
// beside them, as the worker's Computer.Sizes reports).
type Size struct {
	Params  int64 `json:"params"`
	Buffers int64 `json:"buffers"`
}

// ModelSize builds model name with config cfg (nil: its defaults) from the
// project's own definitions (pkg/models) and counts its parameters and
// buffers: inception-v3 has 23,834,568 parameters, resnet-v2-101
// 44,541,480 at 1000 classes. Unknown names and config keys are errors
// that list the known ones.
func ModelSize(name string, cfg models.Config) (Size, error) {
	m, err := models.New(cpu.New(cpu.Options{Threads: 1}), name, cfg)
	if err != nil {
		return Size{}, err
	}
	return Size{
		Params:  int64(m.FlatLayout().Total),
		Buffers: int64(nn.NewLayout(nn.Buffers(m.Params())).Total),
	}, nil
}
