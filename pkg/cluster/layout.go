package cluster

import (
	"fmt"

	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/optim"
	"github.com/logitpair/logitpair/pkg/paramserver"
	"github.com/logitpair/logitpair/pkg/tensor"
	"github.com/logitpair/logitpair/pkg/train"
	"github.com/logitpair/logitpair/pkg/worker"
)

// Layout is a run's parameter layout and its shards.
type Layout struct {
	Params  nn.Layout
	Buffers nn.Layout
	Shards  []paramserver.ShardRange
	// Init is the initial flat parameter vector (model.Init(seed), or
	// --init-from), InitBuffers the initial buffers.
	Init, InitBuffers []float32
}

// NewLayout builds the model of cfg on be, initializes it exactly as local
// training does, and cuts its flat parameter vector into shards.
func NewLayout(be tensor.Backend, cfg train.Config, shards int) (*Layout, *models.Model, error) {
	m, err := models.New(be, cfg.Model, cfg.ModelConfig)
	if err != nil {
		return nil, nil, err
	}
	m.Init(cfg.Seed)
	if cfg.InitFrom != "" {
		return nil, nil, fmt.Errorf("cluster: --init-from is not implemented for the cluster yet; train locally or start from a seed")
	}
	l := &Layout{Params: m.FlatLayout(), Buffers: nn.NewLayout(nn.Buffers(m.Params()))}
	if l.Shards, err = paramserver.Partition(l.Params, shards); err != nil {
		return nil, nil, err
	}
	l.Init = make([]float32, l.Params.Total)
	nn.Gather(be, m.Trainable(), l.Init, false)
	l.InitBuffers = make([]float32, l.Buffers.Total)
	nn.Gather(be, nn.Buffers(m.Params()), l.InitBuffers, false)
	return l, m, nil
}

// ShardConfig returns shard k's configuration for a run of cfg with W
// workers: the optimizer, schedule, weight decay (added by the shard, after
// averaging) and EMA of local training.
func (l *Layout) ShardConfig(cfg train.Config, k, workers int) (paramserver.ShardConfig, []float32, error) {
	oc, err := cfg.OptimConfig()
	if err != nil {
		return paramserver.ShardConfig{}, nil, err
	}
	base := paramserver.ShardConfig{Workers: workers, Optim: oc, Schedule: cfg.LRSchedule, LR: cfg.LR,
		WeightDecay: cfg.WeightDecay, Decay: train.DecayMask(l.Params)}
	if cfg.EMA > 0 {
		ec := optim.DefaultEMA()
		ec.Decay = cfg.EMA
		base.EMA = &ec
	}
	sc := paramserver.ConfigFor(base, l.Shards[k], l.Buffers.Total)
	sc.InitBuffers = append([]float32(nil), l.InitBuffers[sc.BufLo:sc.BufHi]...)
	return sc, append([]float32(nil), l.Init[sc.Lo:sc.Hi]...), nil
}

// Ranges returns the shards' ranges as workers need them.
func (l *Layout) Ranges() []worker.Range {
	out := make([]worker.Range, len(l.Shards))
	for k, r := range l.Shards {
		blo, bhi := paramserver.BufferRange(k, l.Buffers.Total)
		out[k] = worker.Range{Lo: r.Lo, Hi: r.Hi, BufLo: blo, BufHi: bhi}
	}
	return out
}
