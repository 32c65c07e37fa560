// Package gemm is the small matrix-multiply interface that logitpair's CPU
// backend sits on. Two implementations exist: OpenBLAS through cgo (the
// default when cgo is on and the purego build tag is absent) and pure Go
// (gonum's blas32), always compiled so both can be tested side by side.
//
// Every implementation is single-threaded per call: the CPU backend splits
// work across its own goroutines (one GEMM per core), which on small
// per-image GEMMs beats letting the BLAS library thread inside one call.
package gemm

// Gemmer multiplies row-major float32 matrices:
//
//	C = alpha·op(A)·op(B) + beta·C,  op(A): m×k, op(B): k×n, C: m×n,
//
// with leading dimensions lda, ldb, ldc (row strides). Slices must hold the
// matrices they describe; implementations panic otherwise.
type Gemmer interface {
	Name() string
	Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)
}

// Default returns OpenBLAS when this binary was built with it, else pure Go.
func Default() Gemmer {
	if g := openBLAS(); g != nil {
		return g
	}
	return Gonum{}
}

// All returns every implementation compiled into this binary (for tests and
// benchmarks that compare them).
func All() []Gemmer {
	out := []Gemmer{}
	if g := openBLAS(); g != nil {
		out = append(out, g)
	}
	return append(out, Gonum{})
}

// ByName returns the implementation called name ("openblas" or "gonum"), or
// false if it is not compiled in.
func ByName(name string) (Gemmer, bool) {
	for _, g := range All() {
		if g.Name() == name {
			return g, true
		}
	}
	return nil, false
}

func check(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	if m < 0 || n < 0 || k < 0 || lda < max(ac, 1) || ldb < max(bc, 1) || ldc < max(n, 1) {
		panic("gemm: bad dimensions")
	}
	if (ar > 0 && len(a) < (ar-1)*lda+ac) || (br > 0 && len(b) < (br-1)*ldb+bc) || (m > 0 && len(c) < (m-1)*ldc+n) {
		panic("gemm: slice too short for matrix")
	}
}
