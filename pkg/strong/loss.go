package strong

import (
	"fmt"
	"math"

	"github.com/logitpair/logitpair/pkg/tensor"
)

// LossKind is an attack objective over the logits z of one example with true
// label y (and target t for the targeted loss). Every loss is ascended.
type LossKind int

const (
	// CE is the cross-entropy of the true label, log Σ_j e^{z_j} − z_y.
	CE LossKind = iota
	// CW is Carlini & Wagner's margin, max_{j≠y} z_j − z_y.
	CW
	// DLR is Croce & Hein's (2020) difference of logits ratio,
	// −(z_y − max_{j≠y} z_j) / (z_π1 − z_π3), with z_π sorted in decreasing
	// order: invariant to shifting and scaling the logits, so saturating the
	// softmax does not hide its gradient. It needs at least 3 classes.
	DLR
	// TargetedCE is −CE of a target class t (ascending it descends the
	// target's cross-entropy, the released ALP code's pgdll/pgdrnd).
	TargetedCE
)

func (l LossKind) String() string {
	return [...]string{"ce", "cw", "dlr", "targeted-ce"}[l]
}

// Targeted reports whether the loss needs a target class.
func (l LossKind) Targeted() bool { return l == TargetedCE }

// eval returns the loss of one row of logits and, when dz is non-nil, writes
// its gradient with respect to z into dz. Arithmetic is in float64, so the
// cross-entropy's gradient vanishes only where float64 softmax saturates.
func (l LossKind) eval(z []float32, y, t int, dz []float32) float64 {
	k := len(z)
	for j := range dz {
		dz[j] = 0
	}
	// other: arg max over j ≠ y.
	other := -1
	for j, v := range z {
		if j != y && (other < 0 || v > z[other]) {
			other = j
		}
	}
	switch l {
	case CE, TargetedCE:
		c := y
		if l == TargetedCE {
			c = t
		}
		mx := math.Inf(-1)
		for _, v := range z {
			mx = math.Max(mx, float64(v))
		}
		s := 0.0
		for _, v := range z {
			s += math.Exp(float64(v) - mx)
		}
		lse := mx + math.Log(s)
		ce := lse - float64(z[c])
		if dz != nil {
			sign := 1.0
			if l == TargetedCE {
				sign = -1
			}
			for j, v := range z {
				p := math.Exp(float64(v) - lse)
				if j == c {
					p -= 1
				}
				dz[j] = float32(sign * p)
			}
		}
		if l == TargetedCE {
			return -ce
		}
		return ce
	case CW:
		if dz != nil {
			dz[other] = 1
			dz[y] = -1
		}
		return float64(z[other]) - float64(z[y])
	case DLR:
		if k < 3 {
			tensor.Panicf("strong", "the DLR loss needs at least 3 classes, got %d", k)
		}
		p1, p2, p3 := top3(z)
		_ = p2
		u := float64(z[y]) - float64(z[other])
		d := float64(z[p1]) - float64(z[p3]) + 1e-12
		if dz != nil {
			// f = −u/d: ∂f = −∂u/d + u/d²·∂d, ∂u = e_y − e_other, ∂d = e_π1 − e_π3.
			dz[y] += float32(-1 / d)
			dz[other] += float32(1 / d)
			dz[p1] += float32(u / (d * d))
			dz[p3] -= float32(u / (d * d))
		}
		return -u / d
	}
	panic(fmt.Sprintf("strong: unknown loss %d", l))
}

// top3 returns the indices of the three largest entries, largest first.
func top3(z []float32) (a, b, c int) {
	a, b, c = -1, -1, -1
	for j, v := range z {
		switch {
		case a < 0 || v > z[a]:
			a, b, c = j, a, b
		case b < 0 || v > z[b]:
			b, c = j, b
		case c < 0 || v > z[c]:
			c = j
		}
	}
	return a, b, c
}

// Loss adapts a LossKind to attack.Loss, so pkg/attack's PGD (Attack.RunLoss)
// can ascend it too.
type Loss struct {
	Kind    LossKind
	Be      tensor.Backend
	Labels  []int32
	Targets []int32 // for TargetedCE
	host    []float32
	dz      []float32
}

// Grad implements attack.Loss.
func (l *Loss) Grad(dz, z *tensor.Tensor, perExample []float32) {
	n, k := z.Dim(0), z.Dim(1)
	if cap(l.host) < n*k {
		l.host, l.dz = make([]float32, n*k), make([]float32, n*k)
	}
	l.host, l.dz = l.host[:n*k], l.dz[:n*k]
	l.Be.Download(l.host, z)
	for i := 0; i < n; i++ {
		t := 0
		if l.Kind.Targeted() {
			t = int(l.Targets[i])
		}
		v := l.Kind.eval(l.host[i*k:(i+1)*k], int(l.Labels[i]), t, l.dz[i*k:(i+1)*k])
		if perExample != nil {
			perExample[i] = float32(v)
		}
	}
	if dz != nil {
		l.Be.Upload(dz, l.dz)
	}
}

// margin returns z_y − max_{j≠y} z_j (positive: correctly classified).
func margin(z []float32, y int) float32 {
	m := float32(math.Inf(-1))
	for j, v := range z {
		if j != y && v > m {
			m = v
		}
	}
	return z[y] - m
}

// rank returns how many logits beat the label's (ties broken toward the
// lower index, as pkg/eval does): 0 is top-1 correct, < 5 top-5 correct.
func rank(z []float32, y int) int {
	above := 0
	for j, v := range z {
		if v > z[y] || (v == z[y] && j < y) {
			above++
		}
	}
	return above
}
