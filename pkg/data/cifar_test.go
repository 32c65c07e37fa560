package data

import (
	"fmt"
	"testing"
)

// cifarRecords returns n records: label (first+i)%10, pixel (c,y,x) of
// record i = (i + 3c + 5y + 7x) % 256.
func cifarRecords(n, first int) []byte {
	var b []byte
	for i := 0; i < n; i++ {
		b = append(b, byte((first+i)%10))
		for c := 0; c < 3; c++ {
			for y := 0; y < 32; y++ {
				for x := 0; x < 32; x++ {
					b = append(b, byte(i+3*c+5*y+7*x))
				}
			}
		}
	}
	return b
}

func TestLoadCIFAR10(t *testing.T) {
	for _, sub := range []string{"", "cifar-10-batches-bin"} {
		t.Run("sub="+sub, func(t *testing.T) {
			dir := t.TempDir()
			for k, name := range CIFAR10Files("train") {
				writeFile(t, dir, sub+"/"+name, cifarRecords(2, 2*k))
			}
			writeFile(t, dir, sub+"/test_batch.bin", cifarRecords(3, 7))
			d, err := Load("cifar10", dir, "train")
			if err != nil {
				t.Fatal(err)
			}
			if d.Len() != 10 || d.C != 3 || d.H != 32 || d.W != 32 || d.Classes != 10 || d.Name != "cifar10" {
				t.Fatalf("got %d examples %dx%dx%d", d.Len(), d.C, d.H, d.W)
			}
			if err := d.Validate(); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 10; i++ {
				if d.Labels[i] != int32(i) {
					t.Errorf("label %d = %d", i, d.Labels[i])
				}
			}
			// example 3 is record 1 of data_batch_2: pixel (c=2,y=4,x=5)
			if got, want := d.Image(3)[2*1024+4*32+5], float32(byte(1+6+20+35))/255; got != want {
				t.Errorf("pixel %v, want %v", got, want)
			}
			te, err := Load("cifar10", dir, "test")
			if err != nil || te.Len() != 3 || te.Labels[0] != 7 || te.Labels[2] != 9 {
				t.Fatalf("test: %v %v", te, err)
			}
		})
	}
}

func TestCIFARCorruption(t *testing.T) {
	dir := t.TempDir()
	good := cifarRecords(3, 0)
	for _, n := range []int{1, 100, CIFARRecordSize + 1, 2*CIFARRecordSize + 3072, len(good) - 1} {
		p := writeFile(t, dir, fmt.Sprint("t", n), good[:n])
		_, err := LoadCIFARBatches(p)
		start := n - n%CIFARRecordSize
		wantFormatError(t, err, p, int64(start), int64(start), "truncated")
	}
	p := writeFile(t, dir, "empty", nil)
	_, err := LoadCIFARBatches(p)
	wantFormatError(t, err, p, 0, 0, "empty")

	bad := append([]byte(nil), good...)
	bad[2*CIFARRecordSize] = 10
	p = writeFile(t, dir, "label", bad)
	_, err = LoadCIFARBatches(writeFile(t, dir, "ok", good), p)
	wantFormatError(t, err, p, 2*CIFARRecordSize, 2*CIFARRecordSize, "label 10 of record 2")

	if _, err := LoadCIFAR10(t.TempDir(), "train"); err == nil {
		t.Error("missing files accepted")
	}
	// One of the five train batches missing.
	d := t.TempDir()
	for _, name := range CIFAR10Files("train")[:4] {
		writeFile(t, d, name, good)
	}
	if _, err := LoadCIFAR10(d, "train"); err == nil {
		t.Error("missing data_batch_5 accepted")
	}
}
