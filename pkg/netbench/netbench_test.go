package netbench

import "testing"

func TestRawTCPMovesTheBytes(t *testing.T) {
	d, err := RawTCP(3<<20+5, 2)
	if err != nil {
		t.Fatal(err)
	}
	if d <= 0 {
		t.Fatalf("round time %v", d)
	}
	if _, err := RawTCP(0, 1); err == nil {
		t.Fatal("0 bytes accepted")
	}
}

// BenchmarkRawTCP reports the raw-TCP loopback rate for madry-mnist's
// parameter vector (13.1 MB each way).
func BenchmarkRawTCP(b *testing.B) {
	const n = 4 * 3274634
	b.SetBytes(2 * n)
	d, err := RawTCP(n, b.N)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(d.Microseconds())/1e3, "ms/round")
}
