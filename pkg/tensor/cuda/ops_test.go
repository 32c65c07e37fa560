//go:build cgo && linux && !static && !purego

package cuda_test

import (
	"math"
	"math/rand"
	"testing"

	"github.com/logitpair/logitpair/pkg/nn/nntest"
	"github.com/logitpair/logitpair/pkg/tensor"
	"github.com/logitpair/logitpair/pkg/tensor/cpu"
	"github.com/logitpair/logitpair/pkg/tensor/cuda"
)

// tol is the agreement required between the CUDA and CPU backends: relative
// error below 1e-3 in float32 (per element, with the tensor's largest
// magnitude as the floor for entries near zero; see nntest.Close).
const tol = 1e-3

// pair runs the same op on the CUDA backend under test and the CPU
// reference.
type pair struct {
	t   *testing.T
	g   tensor.Backend
	c   tensor.Backend
	rng *rand.Rand
}

func newPair(t *testing.T, seed int64) *pair {
	return &pair{t: t, g: cuda.ForTest(t), c: cpu.New(cpu.Options{Threads: 1}), rng: rand.New(rand.NewSource(seed))}
}

// randn uploads the same normal(0, std) values to both backends.
func (p *pair) randn(std float64, shape ...int) (g, c *tensor.Tensor) {
	v := make([]float32, tensor.Shape(shape).Numel())
	for i := range v {
		v[i] = float32(p.rng.NormFloat64() * std)
	}
	return p.upload(v, shape...)
}

// uniform uploads the same uniform [lo, hi) values to both backends.
func (p *pair) uniform(lo, hi float64, shape ...int) (g, c *tensor.Tensor) {
	v := make([]float32, tensor.Shape(shape).Numel())
	for i := range v {
		v[i] = float32(lo + (hi-lo)*p.rng.Float64())
	}
	return p.upload(v, shape...)
}

func (p *pair) upload(v []float32, shape ...int) (g, c *tensor.Tensor) {
	g, c = p.g.New(shape...), p.c.New(shape...)
	p.g.Upload(g, v)
	p.c.Upload(c, v)
	return g, c
}

func (p *pair) zeros(shape ...int) (g, c *tensor.Tensor) { return p.g.New(shape...), p.c.New(shape...) }

// check compares a CUDA tensor with its CPU counterpart.
func (p *pair) check(what string, g, c *tensor.Tensor) {
	p.t.Helper()
	if !g.Shape().Equal(c.Shape()) {
		p.t.Fatalf("%s: shape %v, CPU %v", what, g.Shape(), c.Shape())
	}
	nntest.Close(p.t, what, nntest.Host(p.g, g), nntest.Host(p.c, c), tol)
}

func (p *pair) checkScalar(what string, g, c float64) {
	p.t.Helper()
	if !(math.Abs(g-c) <= tol*math.Abs(c)+1e-6) {
		p.t.Errorf("%s = %.9g, CPU %.9g", what, g, c)
	}
}

func TestMemoryAndViews(t *testing.T) {
	p := newPair(t, 1)
	g, c := p.randn(1, 4, 3, 2)
	p.check("upload/download", g, c)
	// Rows are views: writing through one changes the parent.
	g2, c2 := p.randn(1, 2, 3, 2)
	p.g.Copy(g.Rows(1, 3), g2)
	p.c.Copy(c.Rows(1, 3), c2)
	p.check("copy into rows", g, c)
	p.g.Fill(g.Rows(3, 4), 2.5)
	p.c.Fill(c.Rows(3, 4), 2.5)
	p.check("fill rows", g, c)
	p.check("reshape", g.Reshape(4, 6), c.Reshape(4, 6))
	z := p.g.New(1000)
	if s := p.g.SumSquares(z); s != 0 {
		t.Errorf("New is not zero-filled: Σx² = %v", s)
	}
	empty := p.g.New(0, 5)
	p.g.Upload(empty, nil)
	p.g.Download(nil, empty)
	if s := p.g.Sum(empty); s != 0 {
		t.Errorf("sum of an empty tensor = %v", s)
	}
	other := cpu.New(cpu.Options{Threads: 1}).New(2)
	func() {
		defer func() {
			if recover() == nil {
				t.Error("a CPU tensor was accepted by the CUDA backend")
			}
		}()
		p.g.Fill(other, 1)
	}()
	if err := tensor.Maybe(func() { p.g.Upload(g, make([]float32, 3)) }); err == nil {
		t.Error("Upload of the wrong length was accepted")
	}
}

func TestElementwiseAndReductions(t *testing.T) {
	p := newPair(t, 2)
	n := 100_003 // more than maxReduceBlocks blocks of 256: the grid-stride path
	xg, xc := p.randn(1, n)
	yg, yc := p.randn(1, n)
	p.checkScalar("Sum", p.g.Sum(xg), p.c.Sum(xc))
	p.checkScalar("SumSquares", p.g.SumSquares(xg), p.c.SumSquares(xc))
	p.g.Scale(xg, -0.75)
	p.c.Scale(xc, -0.75)
	p.check("Scale", xg, xc)
	p.g.Axpy(yg, 0.3, xg)
	p.c.Axpy(yc, 0.3, xc)
	p.check("Axpy", yg, yc)
	dg, dc := p.zeros(n)
	p.g.Add(dg, xg, yg)
	p.c.Add(dc, xc, yc)
	p.check("Add", dg, dc)
	p.g.Add(xg, xg, yg) // dst aliasing an input
	p.c.Add(xc, xc, yc)
	p.check("Add aliased", xg, xc)
	rg, rc := p.zeros(n)
	p.g.ReLU(rg, xg)
	p.c.ReLU(rc, xc)
	p.check("ReLU", rg, rc)
	p.g.ReLUBackward(yg, yg, rg) // dx aliasing dy
	p.c.ReLUBackward(yc, yc, rc)
	p.check("ReLUBackward", yg, yc)
	// Signed zeros and NaN follow the CPU's mask rule exactly.
	special := []float32{0, float32(math.Copysign(0, -1)), 1e-45, -1e-45, float32(math.NaN()), -3, 3}
	sg, sc := p.upload(special, len(special))
	og, oc := p.zeros(len(special))
	p.g.ReLU(og, sg)
	p.c.ReLU(oc, sc)
	got, want := nntest.Host(p.g, og), nntest.Host(p.c, oc)
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Errorf("ReLU(%v) = %v, CPU %v", special[i], got[i], want[i])
		}
	}
}

func TestMatMul(t *testing.T) {
	p := newPair(t, 3)
	m, k, n := 5, 7, 4
	for _, ta := range []bool{false, true} {
		for _, tb := range []bool{false, true} {
			as := []int{m, k}
			if ta {
				as = []int{k, m}
			}
			bs := []int{k, n}
			if tb {
				bs = []int{n, k}
			}
			ag, ac := p.randn(1, as...)
			bg, bc := p.randn(1, bs...)
			cg, cc := p.randn(1, m, n)
			p.g.MatMul(cg, ag, bg, ta, tb, 0.5, 0.3)
			p.c.MatMul(cc, ac, bc, ta, tb, 0.5, 0.3)
			p.check("MatMul", cg, cc)
			p.g.MatMul(cg, ag, bg, ta, tb, 1, 0)
			p.c.MatMul(cc, ac, bc, ta, tb, 1, 0)
			p.check("MatMul beta=0", cg, cc)
		}
	}
	// k = 0 (the CPU's BLAS rejects it): c = beta·c.
	ag, _ := p.zeros(3, 0)
	bg, _ := p.zeros(0, 2)
	cg, cc := p.randn(1, 3, 2)
	p.g.MatMul(cg, ag, bg, false, false, 1, 2)
	p.c.Scale(cc, 2)
	p.check("MatMul k=0", cg, cc)
	// A dense layer's shapes: (N, in)·(out, in)ᵀ.
	xg, xc := p.randn(1, 6, 33)
	wg, wc := p.randn(1, 17, 33)
	yg, yc := p.zeros(6, 17)
	p.g.MatMul(yg, xg, wg, false, true, 1, 0)
	p.c.MatMul(yc, xc, wc, false, true, 1, 0)
	p.check("MatMul dense", yg, yc)
}

func TestBias(t *testing.T) {
	p := newPair(t, 4)
	for _, shape := range [][]int{{5, 3}, {2, 4, 3, 5}} {
		yg, yc := p.randn(1, shape...)
		bg, bc := p.randn(1, shape[1])
		p.g.AddBias(yg, bg)
		p.c.AddBias(yc, bc)
		p.check("AddBias", yg, yc)
		p.g.BiasGrad(bg, yg)
		p.c.BiasGrad(bc, yc)
		p.check("BiasGrad", bg, bc)
	}
}

func TestConv(t *testing.T) {
	type tc struct {
		name string
		x, w []int
		p    tensor.ConvParams
		bias bool
	}
	same := func(in, k, s int) (int, int) { return tensor.SamePadding(in, k, s) }
	st, sb := same(9, 3, 2)
	sl, sr := same(8, 3, 2)
	cases := []tc{
		{"3x3 pad 1", []int{2, 3, 7, 6}, []int{4, 3, 3, 3}, tensor.ConvParams{StrideH: 1, StrideW: 1, PadTop: 1, PadBottom: 1, PadLeft: 1, PadRight: 1}, true},
		{"3x3 stride 2 same (asymmetric) + ReLU", []int{3, 2, 9, 8}, []int{5, 2, 3, 3}, tensor.ConvParams{StrideH: 2, StrideW: 2, PadTop: st, PadBottom: sb, PadLeft: sl, PadRight: sr, ReLU: true}, true},
		{"1x1 direct + ReLU", []int{2, 4, 5, 5}, []int{3, 4, 1, 1}, tensor.ConvParams{StrideH: 1, StrideW: 1, ReLU: true}, false},
		{"1x1 stride 2", []int{2, 3, 6, 6}, []int{4, 3, 1, 1}, tensor.ConvParams{StrideH: 2, StrideW: 2}, true},
		{"5x5 stride (2,1) pad (2,1)", []int{2, 3, 8, 7}, []int{2, 3, 5, 5}, tensor.ConvParams{StrideH: 2, StrideW: 1, PadTop: 2, PadBottom: 2, PadLeft: 1, PadRight: 1}, true},
		{"1x7 pad 3", []int{2, 3, 6, 9}, []int{2, 3, 1, 7}, tensor.ConvParams{StrideH: 1, StrideW: 1, PadLeft: 3, PadRight: 3}, false},
		{"7x1 pad 3", []int{1, 2, 9, 4}, []int{3, 2, 7, 1}, tensor.ConvParams{StrideH: 1, StrideW: 1, PadTop: 3, PadBottom: 3}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newPair(t, 5)
			xg, xc := p.randn(1, c.x...)
			wg, wc := p.randn(0.5, c.w...)
			var bg, bc *tensor.Tensor
			if c.bias {
				bg, bc = p.randn(0.5, c.w[0])
			}
			cg, cc := p.g.NewConv(xg.Shape(), wg.Shape(), c.p), p.c.NewConv(xc.Shape(), wc.Shape(), c.p)
			if !cg.OutShape().Equal(cc.OutShape()) {
				t.Fatalf("OutShape %v, CPU %v", cg.OutShape(), cc.OutShape())
			}
			yg, yc := p.zeros(cg.OutShape()...)
			cg.Forward(yg, xg, wg, bg)
			cc.Forward(yc, xc, wc, bc)
			p.check("y", yg, yc)
			dyg, dyc := p.randn(1, cg.OutShape()...)
			dxg, dxc := p.zeros(c.x...)
			dwg, dwc := p.zeros(c.w...)
			dbg, dbc := p.zeros(c.w[0])
			cg.Backward(dxg, dwg, dbg, dyg, xg, wg)
			cc.Backward(dxc, dwc, dbc, dyc, xc, wc)
			p.check("dx", dxg, dxc)
			p.check("dw", dwg, dwc)
			p.check("db", dbg, dbc)
			p.check("dy unchanged", dyg, dyc)
			// Input gradient only (a PGD step), then weights only.
			p.g.Fill(dxg, 7)
			cg.Backward(dxg, nil, nil, dyg, xg, wg)
			p.check("dx only", dxg, dxc)
			p.g.Fill(dwg, 7)
			cg.Backward(nil, dwg, nil, dyg, xg, wg)
			p.check("dw only", dwg, dwc)
		})
	}
}

func TestPooling(t *testing.T) {
	for _, pp := range []tensor.PoolParams{
		{KernelH: 2, KernelW: 2, StrideH: 2, StrideW: 2},
		{KernelH: 3, KernelW: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1},
		{KernelH: 3, KernelW: 2, StrideH: 1, StrideW: 2, PadH: 1},
	} {
		p := newPair(t, 6)
		xg, xc := p.randn(1, 2, 3, 9, 8)
		mg, mc := p.g.NewMaxPool(xg.Shape(), pp), p.c.NewMaxPool(xc.Shape(), pp)
		yg, yc := p.zeros(mg.OutShape()...)
		mg.Forward(yg, xg)
		mc.Forward(yc, xc)
		p.check("max pool", yg, yc)
		dyg, dyc := p.randn(1, mg.OutShape()...)
		dxg, dxc := p.randn(1, 2, 3, 9, 8) // overwritten
		mg.Backward(dxg, dyg)
		mc.Backward(dxc, dyc)
		p.check("max pool backward", dxg, dxc)
		ag, ac := p.zeros(mg.OutShape()...)
		p.g.AvgPool2D(ag, xg, pp)
		p.c.AvgPool2D(ac, xc, pp)
		p.check("avg pool", ag, ac)
		p.g.AvgPool2DBackward(dxg, dyg, pp)
		p.c.AvgPool2DBackward(dxc, dyc, pp)
		p.check("avg pool backward", dxg, dxc)
	}
}

func TestBatchNorm(t *testing.T) {
	for _, shape := range [][]int{{4, 3, 5, 6}, {7, 5}} {
		p := newPair(t, 7)
		c := shape[1]
		xg, xc := p.randn(2, shape...)
		p.g.Scale(xg, 1) // no-op on the device; keeps both paths symmetric
		gg, gc := p.randn(1, c)
		bg, bc := p.randn(1, c)
		rmg, rmc := p.randn(1, c)
		rvg, rvc := p.uniform(0.5, 2, c)
		smg, smc := p.zeros(c)
		sig, sic := p.zeros(c)
		yg, yc := p.zeros(shape...)
		p.g.BatchNormTrain(yg, xg, gg, bg, rmg, rvg, smg, sig, 0.1, 1e-5)
		p.c.BatchNormTrain(yc, xc, gc, bc, rmc, rvc, smc, sic, 0.1, 1e-5)
		p.check("train y", yg, yc)
		p.check("save mean", smg, smc)
		p.check("save inv std", sig, sic)
		p.check("running mean", rmg, rmc)
		p.check("running var", rvg, rvc)
		dyg, dyc := p.randn(1, shape...)
		dxg, dxc := p.zeros(shape...)
		dgg, dgc := p.zeros(c)
		dbg, dbc := p.zeros(c)
		p.g.BatchNormBackward(dxg, dgg, dbg, dyg, xg, gg, smg, sig)
		p.c.BatchNormBackward(dxc, dgc, dbc, dyc, xc, gc, smc, sic)
		p.check("train dx", dxg, dxc)
		p.check("train dgamma", dgg, dgc)
		p.check("train dbeta", dbg, dbc)
		p.g.BatchNormBackward(dxg, nil, nil, dyg, xg, gg, smg, sig)
		p.check("train dx (input only)", dxg, dxc)
		p.g.BatchNormEval(yg, xg, gg, bg, rmg, rvg, 1e-3)
		p.c.BatchNormEval(yc, xc, gc, bc, rmc, rvc, 1e-3)
		p.check("eval y", yg, yc)
		p.g.BatchNormEvalBackward(dxg, dgg, dbg, dyg, xg, gg, rmg, rvg, 1e-3)
		p.c.BatchNormEvalBackward(dxc, dgc, dbc, dyc, xc, gc, rmc, rvc, 1e-3)
		p.check("eval dx", dxg, dxc)
		p.check("eval dgamma", dgg, dgc)
		p.check("eval dbeta", dbg, dbc)
	}
}

func TestPGDStep(t *testing.T) {
	p := newPair(t, 8)
	n := 5000
	x0g, x0c := p.uniform(0, 1, n)
	xg, xc := p.zeros(n)
	p.g.Copy(xg, x0g)
	p.c.Copy(xc, x0c)
	gv := make([]float32, n)
	for i := range gv {
		gv[i] = float32(p.rng.NormFloat64())
		if i%7 == 0 {
			gv[i] = 0 // sign(0) = 0: no step
		}
	}
	gg, gc := p.upload(gv, n)
	for step, alpha := range []float32{0.03, 0.03, -0.05, 0.2} {
		p.g.PGDStep(xg, gg, x0g, alpha, 0.1)
		p.c.PGDStep(xc, gc, x0c, alpha, 0.1)
		got, want := nntest.Host(p.g, xg), nntest.Host(p.c, xc)
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("step %d: x[%d] = %v, CPU %v (the step is exact arithmetic)", step, i, got[i], want[i])
			}
		}
	}
}

func TestSoftmaxCrossEntropy(t *testing.T) {
	p := newPair(t, 9)
	n, k := 6, 11
	zg, zc := p.randn(3, n, k)
	labels := []int32{0, 10, 3, 3, 7, 1}
	dzg, dzc := p.zeros(n, k)
	peg, pec := make([]float32, n), make([]float32, n)
	lg := p.g.SoftmaxCrossEntropy(dzg, zg, labels, 0.1, 0.7, peg)
	lc := p.c.SoftmaxCrossEntropy(dzc, zc, labels, 0.1, 0.7, pec)
	p.checkScalar("loss", lg, lc)
	p.check("dz", dzg, dzc)
	nntest.Close(t, "per-example", peg, pec, tol)
	// Rows (an offset view) and no gradient.
	lg = p.g.SoftmaxCrossEntropy(nil, zg.Rows(2, 5), labels[2:5], 0, 1, nil)
	lc = p.c.SoftmaxCrossEntropy(nil, zc.Rows(2, 5), labels[2:5], 0, 1, nil)
	p.checkScalar("loss of rows", lg, lc)
	// Large logits: stable (no overflow to Inf/NaN).
	big := make([]float32, 2*3)
	for i := range big {
		big[i] = 1000 + float32(i)*50
	}
	bg, bc := p.upload(big, 2, 3)
	dg, dc := p.zeros(2, 3)
	lg = p.g.SoftmaxCrossEntropy(dg, bg, []int32{0, 2}, 0, 1, nil)
	lc = p.c.SoftmaxCrossEntropy(dc, bc, []int32{0, 2}, 0, 1, nil)
	if math.IsNaN(lg) || math.IsInf(lg, 0) {
		t.Fatalf("large logits: loss %v", lg)
	}
	p.checkScalar("large-logit loss", lg, lc)
	p.check("large-logit dz", dg, dc)
	if err := tensor.Maybe(func() { p.g.SoftmaxCrossEntropy(nil, zg, []int32{0, 11, 0, 0, 0, 0}, 0, 1, nil) }); err == nil {
		t.Error("an out-of-range label was accepted")
	}
}
