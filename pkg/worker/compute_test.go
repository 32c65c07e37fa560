package worker_test

import (
	"math"
	"slices"
	"testing"

	"github.com/logitpair/logitpair/pkg/data"
	"github.com/logitpair/logitpair/pkg/data/datatest"
	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/tensor/cpu"
	"github.com/logitpair/logitpair/pkg/train"
	"github.com/logitpair/logitpair/pkg/worker"
)

// newTrainWorker builds a train.Worker for a small model of the given name
// on MNIST-shaped synthetic data (ALP with a 2-step PGD), its parameters
// initialized from seed 1.
func newTrainWorker(t *testing.T, model string, mc models.Config) *train.Worker {
	t.Helper()
	c := train.DefaultConfig()
	c.Dataset, c.Model, c.ModelConfig = "synthetic", model, mc
	c.Batch, c.Steps = 4, 2
	c.AttackSteps, c.StepSize, c.Eps = 2, 0.05, 0.1
	be := cpu.New(cpu.Options{Threads: 1})
	m, err := models.New(be, model, mc)
	if err != nil {
		t.Fatal(err)
	}
	m.Init(1)
	tw, err := train.NewWorker(c, m, data.NewLoader(datatest.Synthetic(64, 1), data.LoaderOptions{Seed: 1}))
	if err != nil {
		t.Fatal(err)
	}
	return tw
}

// sameBits reports whether a and b hold the same float32 bit patterns.
func sameBits(a, b []float32) bool {
	return slices.EqualFunc(a, b, func(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) })
}

// TestTrainComputerHandsOutTheGradientLayerByLayer: Train(tw).Gradient
// calls ready several times with non-increasing offsets ending at 0, each
// time with grad[lo:] already equal to its final value, the buffers final
// from the first call on; and grad and buffers equal, bit for bit, what
// tw.Gradient computes on a twin worker (same parameters, same step and
// slot) followed by a gather of the model's buffers. madry-mnist has no
// buffers; the small resnet-v2-50 has batch norm.
func TestTrainComputerHandsOutTheGradientLayerByLayer(t *testing.T) {
	for _, c := range []struct {
		model string
		mc    models.Config
	}{
		{"madry-mnist", models.Config{"conv1": 2, "conv2": 3, "hidden": 8}},
		{"resnet-v2-50", models.Config{"width": 2, "classes": 10, "in_channels": 1, "image_size": 28}},
	} {
		t.Run(c.model, func(t *testing.T) {
			twin := newTrainWorker(t, c.model, c.mc)
			want := make([]float32, twin.Layout().Total)
			if _, err := twin.Gradient(3, 1, 2, want); err != nil {
				t.Fatal(err)
			}
			bufParams := nn.Buffers(twin.Model.Params())
			wantBufs := make([]float32, nn.NewLayout(bufParams).Total)
			nn.Gather(twin.Model.Backend, bufParams, wantBufs, false)

			comp := worker.Train(newTrainWorker(t, c.model, c.mc))
			np, nb := comp.Sizes()
			if np != len(want) || nb != len(wantBufs) {
				t.Fatalf("Sizes %d, %d; want %d, %d", np, nb, len(want), len(wantBufs))
			}
			grad, bufs := make([]float32, np), make([]float32, nb)
			for i := range grad {
				grad[i] = float32(math.NaN())
			}
			var los []int
			_, _, err := comp.Gradient(3, 1, 2, grad, bufs, func(lo int) {
				if len(los) > 0 && lo > los[len(los)-1] {
					t.Errorf("ready(%d) after ready(%d)", lo, los[len(los)-1])
				}
				los = append(los, lo)
				if !sameBits(grad[lo:], want[lo:]) {
					t.Errorf("ready(%d): grad[%d:] is not final", lo, lo)
				}
				if !sameBits(bufs, wantBufs) {
					t.Errorf("ready(%d): the buffers are not final", lo)
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(los) < 2 || los[len(los)-1] != 0 {
				t.Fatalf("ready offsets %v: want several, ending at 0", los)
			}
			if !sameBits(grad, want) || !sameBits(bufs, wantBufs) {
				t.Fatal("the gradient or buffers differ from tw.Gradient's")
			}
			if nb > 0 && sameBits(wantBufs, make([]float32, nb)) {
				t.Fatal("the buffers are all zero: the check of them proves nothing")
			}
		})
	}
}
