package models_test

import (
	"math"
	"slices"
	"testing"

	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/nn/nntest"
)

// TestBackwardReadyHandsOutFinalGradientsFromTheTop: for madry-mnist (a
// flat Sequential), resnet9 (nested Sequentials, batch norm, residuals) and
// resnet-v2-50 (its own block type as a leaf), BackwardReady leaves the
// same parameter gradients as Backward, bit for bit, and calls ready with
// strictly decreasing offsets ending at 0 — more than once — where at each
// call every gradient from lo on is final and none below lo is written yet
// (those hold a NaN sentinel until their layer's Backward runs). For
// madry-mnist the offsets are exactly where fc2, fc1, conv2 and conv1
// begin.
func TestBackwardReadyHandsOutFinalGradientsFromTheTop(t *testing.T) {
	be := nntest.Backends()[0]
	cases := []struct {
		name string
		cfg  models.Config
		want []string // the tensors whose offsets ready reports, in order (nil: not checked)
	}{
		{"madry-mnist", models.Config{"conv1": 2, "conv2": 3, "hidden": 8}, []string{"fc2.weight", "fc1.weight", "conv2.weight", "conv1.weight"}},
		{"resnet9", models.Config{"width": 2}, nil},
		{"resnet-v2-50", models.Config{"width": 2, "classes": 5, "image_size": 16}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := models.New(be, c.name, c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			m.Init(5)
			n := 3
			x := nntest.Random(be, newRand(6), 0.5, n, m.Input[0], max(m.Input[1], 16), max(m.Input[2], 16))
			labels := []int32{0, 1, 2}
			dz := be.New(n, m.Classes)
			z := m.Forward(x, true)
			nn.SoftmaxCrossEntropy(be, dz, z, labels, 0)
			layout := m.FlatLayout()
			tr := m.Trainable()
			ref := make([]float32, layout.Total)
			m.Backward(dz, nn.Grad{Params: true})
			nn.Gather(be, tr, ref, true)

			for _, p := range tr {
				nan := make([]float32, p.Grad.Numel())
				for i := range nan {
					nan[i] = float32(math.NaN())
				}
				be.Upload(p.Grad, nan)
			}
			got := make([]float32, layout.Total)
			var los []int
			m.BackwardReady(dz, nn.Grad{Params: true}, func(lo int) {
				if len(los) > 0 && lo >= los[len(los)-1] {
					t.Errorf("ready(%d) after ready(%d)", lo, los[len(los)-1])
				}
				los = append(los, lo)
				nn.Gather(be, tr, got, true)
				for i, v := range got {
					if i >= lo && math.Float32bits(v) != math.Float32bits(ref[i]) {
						t.Fatalf("ready(%d): gradient element %d is %v, final %v", lo, i, v, ref[i])
					}
					if i < lo && !math.IsNaN(float64(v)) {
						t.Fatalf("ready(%d): gradient element %d below lo already written", lo, i)
					}
				}
			})
			if len(los) < 2 || los[len(los)-1] != 0 {
				t.Fatalf("ready offsets %v: want several, ending at 0", los)
			}
			if c.want != nil {
				var want []int
				for _, name := range c.want {
					i := slices.IndexFunc(layout.Ranges, func(r nn.Range) bool { return r.Name == name })
					want = append(want, layout.Ranges[i].Offset)
				}
				if !slices.Equal(los, want) {
					t.Fatalf("ready offsets %v, want %v (%v)", los, want, c.want)
				}
			}
			t.Logf("%d ready calls for %d parameters", len(los), layout.Total)
		})
	}
}
