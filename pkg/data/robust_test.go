package data

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// TestNoPanicOnMutations feeds randomly damaged files (flipped bytes,
// truncations, huge sizes written into headers) to every loader: they must
// return (an error or a result), never panic.
func TestNoPanicOnMutations(t *testing.T) {
	bo := binary.LittleEndian
	im, lb := mnistLike(3)
	x, y := svhnVars(2, []float64{10, 4}, miDOUBLE, bo)
	matPlain, _ := matFile(t, bo, false, x, y)
	matZ, _ := matFile(t, bo, true, x, y)
	inputs := map[string][]byte{
		"idx": im, "idx.gz": gzipBytes(t, im), "cifar": cifarRecords(2, 0),
		"mat": matPlain, "mat.z": matZ,
	}
	dir := t.TempDir()
	lbPath := writeFile(t, dir, "labels", lb)
	r := rand.New(rand.NewPCG(1, 2))
	for name, good := range inputs {
		for it := 0; it < 300; it++ {
			b := append([]byte(nil), good...)
			switch it % 3 {
			case 0:
				for k := 0; k < 1+r.IntN(4); k++ {
					b[r.IntN(len(b))] ^= byte(1 + r.IntN(255))
				}
			case 1:
				b = b[:r.IntN(len(b))]
			case 2: // a huge or odd 32-bit value somewhere in the first 256 bytes
				at := r.IntN(min(len(b), 256) - 4)
				binary.LittleEndian.PutUint32(b[at:], []uint32{0xffffffff, 0x7fffffff, 1 << 31, 0, 3}[r.IntN(5)])
			}
			p := writeFile(t, dir, name, b)
			func() {
				defer func() {
					if e := recover(); e != nil {
						t.Fatalf("%s mutation %d: panic %v", name, it, e)
					}
				}()
				switch name {
				case "idx", "idx.gz":
					LoadIDX(p, lbPath, 10)
				case "cifar":
					LoadCIFARBatches(p)
				default:
					LoadSVHN(p)
				}
			}()
		}
	}
}
