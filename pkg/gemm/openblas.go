//go:build cgo && !purego

package gemm

/*
#cgo LDFLAGS: -lopenblas
// Prototypes declared here so no BLAS header is needed to build. Enum values
// are CBLAS's: CblasRowMajor=101, CblasNoTrans=111, CblasTrans=112.
void cblas_sgemm(int order, int transA, int transB, int m, int n, int k,
                 float alpha, const float *a, int lda, const float *b, int ldb,
                 float beta, float *c, int ldc);
void openblas_set_num_threads(int n);
*/
import "C"

import "unsafe"

// OpenBLAS calls cblas_sgemm through cgo. OpenBLAS's own threading is turned
// off (set to 1 thread): the CPU backend parallelizes over goroutines.
type OpenBLAS struct{}

func init() { C.openblas_set_num_threads(1) }

func openBLAS() Gemmer { return OpenBLAS{} }

// Name implements Gemmer.
func (OpenBLAS) Name() string { return "openblas" }

// Sgemm implements Gemmer.
func (OpenBLAS) Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	check(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	if m == 0 || n == 0 {
		return
	}
	if k == 0 { // cblas with k=0 still scales C by beta; keep that but avoid empty-slice pointers
		for i := 0; i < m; i++ {
			row := c[i*ldc : i*ldc+n]
			for j := range row {
				if beta == 0 {
					row[j] = 0
				} else {
					row[j] *= beta
				}
			}
		}
		return
	}
	ta, tb := C.int(111), C.int(111)
	if transA {
		ta = 112
	}
	if transB {
		tb = 112
	}
	C.cblas_sgemm(101, ta, tb, C.int(m), C.int(n), C.int(k), C.float(alpha),
		(*C.float)(unsafe.Pointer(&a[0])), C.int(lda),
		(*C.float)(unsafe.Pointer(&b[0])), C.int(ldb),
		C.float(beta), (*C.float)(unsafe.Pointer(&c[0])), C.int(ldc))
}
