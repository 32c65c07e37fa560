// Package datatest makes small learnable MNIST-shaped datasets for tests:
// in memory, or as the four gzip IDX files `data.Load("mnist", …)` reads.
// Class k's images have a bright band at rows 2k and 2k+1 over a dim random
// background, so a tiny model learns them in a few steps.
package datatest

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/logitpair/logitpair/pkg/data"
)

// Synthetic returns n 28×28 grey images in [0, 1] with labels in [0, 10).
func Synthetic(n int, seed uint64) *data.Dataset {
	rng := rand.New(rand.NewPCG(seed, 7))
	d := &data.Dataset{Name: "synthetic", C: 1, H: 28, W: 28, Classes: 10, Images: make([]float32, n*784), Labels: make([]int32, n)}
	for i := 0; i < n; i++ {
		y := rng.IntN(10)
		d.Labels[i] = int32(y)
		for p := 0; p < 784; p++ {
			v := 0.2 * rng.Float32()
			if p/56 == y {
				v += 0.7
			}
			d.Images[i*784+p] = v
		}
	}
	return d
}

// WriteMNIST writes Synthetic(n, seed) (rounded to bytes) as MNIST's train
// and t10k files, gzip-compressed, into dir.
func WriteMNIST(t testing.TB, dir string, n int, seed uint64) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	d := Synthetic(n, seed)
	for _, split := range []string{"train", "t10k"} {
		imgs, lbls := &bytes.Buffer{}, &bytes.Buffer{}
		binary.Write(imgs, binary.BigEndian, []uint32{0x803, uint32(n), 28, 28})
		binary.Write(lbls, binary.BigEndian, []uint32{0x801, uint32(n)})
		for i := 0; i < n; i++ {
			lbls.WriteByte(byte(d.Labels[i]))
			for _, v := range d.Image(i) {
				imgs.WriteByte(byte(v * 255))
			}
		}
		for name, b := range map[string][]byte{split + "-images-idx3-ubyte.gz": imgs.Bytes(), split + "-labels-idx1-ubyte.gz": lbls.Bytes()} {
			var z bytes.Buffer
			w := gzip.NewWriter(&z)
			w.Write(b)
			w.Close()
			if err := os.WriteFile(filepath.Join(dir, name), z.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
