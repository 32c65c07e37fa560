package data

import (
	"fmt"
	"os"
	"path/filepath"
)

// CIFARRecordSize is the size of one record of the CIFAR-10 binary version:
// 1 label byte, then 1024 red, 1024 green and 1024 blue bytes (32×32, row
// major).
const CIFARRecordSize = 1 + 3*32*32

// CIFAR10Files returns the binary-version batch file names of a split.
func CIFAR10Files(split string) []string {
	if split == "test" {
		return []string{"test_batch.bin"}
	}
	return []string{"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"}
}

// LoadCIFAR10 loads the CIFAR-10 binary version's split ("train": the five
// data batches in order, "test": test_batch.bin) from dir or from
// dir/cifar-10-batches-bin.
func LoadCIFAR10(dir, split string) (*Dataset, error) {
	paths, err := cifar10Paths(dir, split)
	if err != nil {
		return nil, err
	}
	d, err := LoadCIFARBatches(paths...)
	if err != nil {
		return nil, err
	}
	d.ClassNames = []string{"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"}
	return d, nil
}

// cifar10Paths returns the paths of a split's batch files in dir or
// dir/cifar-10-batches-bin (where the first one is found).
func cifar10Paths(dir, split string) ([]string, error) {
	if split != "train" && split != "test" {
		return nil, fmt.Errorf("data: split %q: want \"train\" or \"test\"", split)
	}
	names := CIFAR10Files(split)
	base := dir
	if _, err := os.Stat(filepath.Join(dir, names[0])); err != nil {
		if sub := filepath.Join(dir, "cifar-10-batches-bin"); exists(filepath.Join(sub, names[0])) {
			base = sub
		}
	}
	e := &MissingError{Dataset: "cifar10", Dir: dir, Split: split}
	paths := make([]string, len(names))
	for i, n := range names {
		paths[i] = filepath.Join(base, n)
		if !exists(paths[i]) && isDir(dir) {
			rel, _ := filepath.Rel(dir, paths[i])
			e.Missing = append(e.Missing, rel)
		}
	}
	if len(e.Missing) > 0 || !isDir(dir) {
		return nil, e
	}
	return paths, nil
}

// LoadCIFARBatches loads and concatenates CIFAR-10 binary batch files.
// Each file must be a non-empty whole number of 3073-byte records with
// labels below 10.
func LoadCIFARBatches(paths ...string) (*Dataset, error) {
	const px = CIFARRecordSize - 1
	raws := make([][]byte, len(paths))
	total := 0
	for i, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("data: %w", err)
		}
		if len(b) == 0 {
			return nil, formatErr(p, 0, nil, "empty CIFAR-10 batch file")
		}
		if r := len(b) % CIFARRecordSize; r != 0 {
			start := len(b) - r
			return nil, formatErr(p, int64(start), nil,
				"truncated CIFAR-10 record %d: %d of %d bytes", start/CIFARRecordSize, r, CIFARRecordSize)
		}
		raws[i] = b
		total += len(b) / CIFARRecordSize
	}
	d := &Dataset{Name: "cifar10", C: 3, H: 32, W: 32, Classes: 10,
		Pixels: make([]uint8, total*px), Labels: make([]int32, total)}
	k := 0
	for i, b := range raws {
		for off := 0; off < len(b); off += CIFARRecordSize {
			if b[off] >= 10 {
				return nil, formatErr(paths[i], int64(off), nil, "label %d of record %d out of range [0,10)", b[off], off/CIFARRecordSize)
			}
			d.Labels[k] = int32(b[off])
			copy(d.Pixels[k*px:(k+1)*px], b[off+1:off+CIFARRecordSize])
			k++
		}
	}
	return d, nil
}
