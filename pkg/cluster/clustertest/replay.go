package clustertest

import (
	"context"

	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/paramserver"
	"github.com/logitpair/logitpair/pkg/train"
)

// Replay replays log onto shards the way an operator would: with one model
// m and its training step tw (built from the run's configuration), for each
// (step, worker) it loads the shards' step-t parameters and buffers into m,
// recomputes that worker's gradient (slot w of workers) from (seed, step,
// slot), and hands paramserver.Replay the gradient and the buffers the
// training forward pass left.
func Replay(ctx context.Context, log []paramserver.Entry, shards []*paramserver.Shard, m *models.Model, tw *train.Worker, workers int) error {
	be := m.Backend
	bufs := nn.Buffers(m.Params())
	params := make([]float32, nn.NewLayout(m.Trainable()).Total)
	buffers := make([]float32, nn.NewLayout(bufs).Total)
	var gradErr error
	err := paramserver.Replay(log, shards, func(step int64, w int) ([]float32, []float32) {
		for _, s := range shards {
			p, b, err := s.Pull(ctx, step)
			if err != nil {
				gradErr = err
				return nil, nil // Replay reports the short vectors; gradErr says why
			}
			c := s.Config()
			copy(params[c.Lo:c.Hi], p)
			copy(buffers[c.BufLo:c.BufHi], b)
		}
		nn.Scatter(be, m.Trainable(), params)
		nn.Scatter(be, bufs, buffers)
		g := make([]float32, len(params))
		if _, err := tw.Gradient(step, w, workers, g); err != nil {
			gradErr = err
			return nil, nil
		}
		b := make([]float32, len(buffers))
		nn.Gather(be, bufs, b, false)
		return g, b
	})
	if gradErr != nil {
		return gradErr
	}
	return err
}
