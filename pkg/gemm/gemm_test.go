package gemm

import (
	"math"
	"math/rand"
	"testing"
)

// naive is the textbook triple loop in float64, the reference for every
// implementation.
func naive(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) []float32 {
	out := append([]float32(nil), c...)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for p := 0; p < k; p++ {
				av := a[i*lda+p]
				if transA {
					av = a[p*lda+i]
				}
				bv := b[p*ldb+j]
				if transB {
					bv = b[j*ldb+p]
				}
				s += float64(av) * float64(bv)
			}
			out[i*ldc+j] = float32(float64(alpha)*s + float64(beta)*float64(c[i*ldc+j]))
		}
	}
	return out
}

func TestSgemmAgainstNaive(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	rnd := func(n int) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = float32(rng.NormFloat64())
		}
		return s
	}
	for _, g := range All() {
		for _, tc := range []struct{ m, n, k int }{{1, 1, 1}, {3, 5, 7}, {17, 9, 33}, {64, 70, 5}, {4, 3, 0}} {
			for _, ta := range []bool{false, true} {
				for _, tb := range []bool{false, true} {
					m, n, k := tc.m, tc.n, tc.k
					lda := k + 2
					if ta {
						lda = m + 1
					}
					ldb := n + 3
					if tb {
						ldb = k + 1
					}
					ldc := n + 1
					a := rnd(max(m, k) * lda)
					b := rnd(max(n, k) * ldb)
					c := rnd(m * ldc)
					want := naive(ta, tb, m, n, k, 0.7, a, lda, b, ldb, 0.3, c, ldc)
					g.Sgemm(ta, tb, m, n, k, 0.7, a, lda, b, ldb, 0.3, c, ldc)
					for i := 0; i < m; i++ {
						for j := 0; j < n; j++ {
							got, w := c[i*ldc+j], want[i*ldc+j]
							if math.Abs(float64(got-w)) > 1e-4*(1+math.Abs(float64(w))) {
								t.Fatalf("%s m=%d n=%d k=%d ta=%v tb=%v: c[%d,%d]=%v want %v", g.Name(), m, n, k, ta, tb, i, j, got, w)
							}
						}
					}
				}
			}
		}
	}
}

func TestSgemmPanicsOnShortSlice(t *testing.T) {
	for _, g := range All() {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic for short slice", g.Name())
				}
			}()
			g.Sgemm(false, false, 2, 2, 2, 1, make([]float32, 3), 2, make([]float32, 4), 2, 0, make([]float32, 4), 2)
		}()
	}
}

func TestDefaultIsOpenBLASWhenCompiled(t *testing.T) {
	if _, ok := ByName("openblas"); ok && Default().Name() != "openblas" {
		t.Fatalf("default is %s although openblas is compiled in", Default().Name())
	}
	if _, ok := ByName("gonum"); !ok {
		t.Fatal("gonum implementation missing")
	}
}
