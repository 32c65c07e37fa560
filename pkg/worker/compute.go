package worker

import (
	"time"

	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/objective"
	"github.com/logitpair/logitpair/pkg/train"
)

// Computer computes one step's gradient from parameters the worker loads
// into it. Train wraps the training step of `logitpair train`
// (train.Worker: batch → attack → objective → backward); a benchmark
// substitutes a synthetic one (bench.Synthetic) to measure the cluster at a
// GPU's step time on a CPU machine.
//
// The gradient must be a function of (parameters, buffers, step, slot,
// slots) alone, so that a worker that restarts, or a replay of the commit
// log, recomputes it bit for bit.
type Computer interface {
	// Sizes returns the lengths of the flat parameter and buffer vectors.
	Sizes() (params, buffers int)
	// Load makes params and buffers (flat, of Sizes' lengths) the state
	// the next Gradient starts from. The slices stay the worker's: it
	// pulls the next step into them while the loaded state is in use, so
	// Load copies what Gradient needs.
	Load(params, buffers []float32)
	// Gradient computes step's gradient for slot (of slots) into grad and
	// the buffers after the step's forward passes into bufs. ready, when
	// not nil, is called on the computing goroutine each time the elements
	// [lo, len(grad)) of grad have become final, with lo non-increasing; the
	// last call has lo = 0, and bufs is final before the first call. A
	// Computer that cannot tell calls ready(0) once at the end.
	Gradient(step int64, slot, slots int, grad, bufs []float32, ready func(lo int)) (objective.Terms, Timing, error)
}

// Train returns tw as a Computer. tw must be built with the cluster's
// training configuration; its gradient is the objective's alone (the shards
// add weight decay after averaging).
func Train(tw *train.Worker) Computer { return trainComputer{tw} }

type trainComputer struct{ tw *train.Worker }

func (c trainComputer) Sizes() (int, int) {
	return c.tw.Layout().Total, nn.NewLayout(nn.Buffers(c.tw.Model.Params())).Total
}

func (c trainComputer) Load(params, buffers []float32) {
	be := c.tw.Model.Backend
	nn.Scatter(be, c.tw.Model.Trainable(), params)
	nn.Scatter(be, nn.Buffers(c.tw.Model.Params()), buffers)
}

// Gradient hands out the gradient layer by layer as the backward pass
// finishes it (train.Worker.GradientReady), and gathers the buffers at the
// first ready: the forward passes, all done by then, are what changes them.
func (c trainComputer) Gradient(step int64, slot, slots int, grad, bufs []float32, ready func(lo int)) (objective.Terms, Timing, error) {
	t0 := time.Now()
	gathered := false
	terms, err := c.tw.GradientReady(step, slot, slots, grad, func(lo int) {
		if !gathered {
			nn.Gather(c.tw.Model.Backend, nn.Buffers(c.tw.Model.Params()), bufs, false)
			gathered = true
		}
		if ready != nil {
			ready(lo)
		}
	})
	if err != nil {
		return terms, Timing{}, err
	}
	return terms, Timing{Attack: c.tw.AttackTime, Compute: time.Since(t0) - c.tw.AttackTime}, nil
}
