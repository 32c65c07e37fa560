package data

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// IDX magic numbers: unsigned-byte data with 3 dimensions (images) and 1
// dimension (labels).
const (
	IDXImagesMagic = 0x00000803
	IDXLabelsMagic = 0x00000801
)

// maxDecompressed bounds the size of a decompressed file or element (4 GiB),
// so that a corrupt length cannot make a loader allocate without limit.
const maxDecompressed = 4 << 30

// MNIST file names, without the optional ".gz" suffix.
const (
	MNISTTrainImages = "train-images-idx3-ubyte"
	MNISTTrainLabels = "train-labels-idx1-ubyte"
	MNISTTestImages  = "t10k-images-idx3-ubyte"
	MNISTTestLabels  = "t10k-labels-idx1-ubyte"
)

// Load loads a fixed-format dataset into memory. name is "mnist",
// "fashion-mnist", "cifar10" or "svhn"; split is "train" or "test". Open
// also opens the image-folder datasets (tiny-imagenet, imagefolder,
// imagenet).
//
//   - mnist, fashion-mnist: the four IDX files (plain or gzip, told apart by
//     the gzip magic, not by the name) named as distributed, e.g.
//     train-images-idx3-ubyte or train-images-idx3-ubyte.gz, in dir.
//     Images must be 28×28; 10 classes.
//   - cifar10: the binary version's data_batch_1.bin … data_batch_5.bin
//     (train) or test_batch.bin (test), in dir or dir/cifar-10-batches-bin.
//   - svhn: train_32x32.mat or test_32x32.mat (cropped digits) in dir.
func Load(name, dir, split string) (*Dataset, error) {
	if split != "train" && split != "test" {
		return nil, fmt.Errorf("data: split %q: want \"train\" or \"test\"", split)
	}
	switch name {
	case "mnist", "fashion-mnist":
		return LoadMNIST(name, dir, split)
	case "cifar10", "cifar-10":
		return LoadCIFAR10(dir, split)
	case "svhn":
		p, err := svhnPath(dir, split)
		if err != nil {
			return nil, err
		}
		return LoadSVHN(p)
	}
	if IsFolderDataset(name) {
		return nil, fmt.Errorf("data: %s is an image-folder dataset: open it with data.Open, which takes the model's image size", name)
	}
	return nil, unknownDataset(name)
}

// LoadMNIST loads MNIST or Fashion-MNIST (same format) from dir; name is
// only recorded in the Dataset. The images must be 28×28.
func LoadMNIST(name, dir, split string) (*Dataset, error) {
	imPath, lbPath, err := mnistFiles(name, dir, split)
	if err != nil {
		return nil, err
	}
	d, err := LoadIDX(imPath, lbPath, 10)
	if err != nil {
		return nil, err
	}
	if d.H != 28 || d.W != 28 {
		return nil, formatErr(imPath, 8, nil, "%s images are %dx%d, want 28x28", name, d.H, d.W)
	}
	d.Name = name
	return d, nil
}

// mnistFiles returns the paths of a split's MNIST image and label files in
// dir (see findIDX); name is the dataset's, for the *MissingError.
func mnistFiles(name, dir, split string) (images, labels string, err error) {
	im, lb := MNISTTrainImages, MNISTTrainLabels
	if split == "test" {
		im, lb = MNISTTestImages, MNISTTestLabels
	} else if split != "train" {
		return "", "", fmt.Errorf("data: split %q: want \"train\" or \"test\"", split)
	}
	images, labels = findIDX(dir, im), findIDX(dir, lb)
	if images == "" || labels == "" {
		e := &MissingError{Dataset: name, Dir: dir, Split: split}
		if isDir(dir) {
			for _, f := range []struct{ path, base string }{{images, im}, {labels, lb}} {
				if f.path == "" {
					e.Missing = append(e.Missing, f.base+"[.gz]")
				}
			}
		}
		return "", "", e
	}
	return images, labels, nil
}

// svhnPath is the path of a split's SVHN file in dir, a *MissingError when
// there is none.
func svhnPath(dir, split string) (string, error) {
	base := "train_32x32.mat"
	if split == "test" {
		base = "test_32x32.mat"
	}
	p := filepath.Join(dir, base)
	if !exists(p) {
		e := &MissingError{Dataset: "svhn", Dir: dir, Split: split}
		if isDir(dir) {
			e.Missing = []string{base}
		}
		return "", e
	}
	return p, nil
}

// sourceFiles returns the files Load reads for a fixed-format dataset's
// split, resolved as Load resolves them (its errors for a missing file).
func sourceFiles(name, dir, split string) ([]string, error) {
	switch name {
	case "mnist", "fashion-mnist":
		im, lb, err := mnistFiles(name, dir, split)
		if err != nil {
			return nil, err
		}
		return []string{im, lb}, nil
	case "cifar10", "cifar-10":
		return cifar10Paths(dir, split)
	case "svhn":
		p, err := svhnPath(dir, split)
		if err != nil {
			return nil, err
		}
		return []string{p}, nil
	}
	return nil, unknownDataset(name)
}

// findIDX returns dir/base or dir/base.gz, whichever exists (the plain file
// first), or "" when neither does.
func findIDX(dir, base string) string {
	for _, p := range []string{filepath.Join(dir, base), filepath.Join(dir, base+".gz")} {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p
		}
	}
	return ""
}

// LoadIDX loads an IDX image file (magic 0x00000803, N×H×W unsigned bytes)
// and an IDX label file (magic 0x00000801, N unsigned bytes), each plain or
// gzip-compressed. The images get C = 1; labels must be below classes.
func LoadIDX(imagesPath, labelsPath string, classes int) (*Dataset, error) {
	imgs, err := readMaybeGzip(imagesPath)
	if err != nil {
		return nil, err
	}
	dims, pix, err := parseIDX(imagesPath, imgs, IDXImagesMagic, 3)
	if err != nil {
		return nil, err
	}
	labs, err := readMaybeGzip(labelsPath)
	if err != nil {
		return nil, err
	}
	ldims, lab, err := parseIDX(labelsPath, labs, IDXLabelsMagic, 1)
	if err != nil {
		return nil, err
	}
	n, h, w := dims[0], dims[1], dims[2]
	if ldims[0] != n {
		return nil, formatErr(labelsPath, 4, nil, "%d labels for %d images in %s", ldims[0], n, imagesPath)
	}
	if h == 0 || w == 0 {
		return nil, formatErr(imagesPath, 8, nil, "empty image size %dx%d", h, w)
	}
	// The pixels stay bytes (see Dataset), sharing the file's buffer: its
	// only other content is the 16-byte header.
	d := &Dataset{Name: "idx", C: 1, H: h, W: w, Classes: classes,
		Pixels: pix, Labels: make([]int32, n)}
	for i, b := range lab {
		if int(b) >= classes {
			return nil, formatErr(labelsPath, int64(8+i), nil,
				"label %d of example %d out of range [0,%d)%s", b, i, classes, labs.note())
		}
		d.Labels[i] = int32(b)
	}
	return d, nil
}

// fileData is a file's content, decompressed if it was gzip.
type fileData struct {
	b    []byte
	gzip bool
}

func (f fileData) note() string {
	if f.gzip {
		return " (offset in the decompressed gzip stream)"
	}
	return ""
}

// readMaybeGzip reads a file and, if it starts with the gzip magic 1f 8b,
// decompresses it. A decompression error is a FormatError at the compressed
// offset where it was detected.
func readMaybeGzip(path string) (fileData, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fileData{}, fmt.Errorf("data: %w", err)
	}
	if len(raw) < 2 || raw[0] != 0x1f || raw[1] != 0x8b {
		return fileData{b: raw}, nil
	}
	br := bytes.NewReader(raw)
	zr, err := gzip.NewReader(br)
	if err != nil {
		return fileData{}, formatErr(path, br.Size()-int64(br.Len()), err, "bad gzip header")
	}
	var out bytes.Buffer
	out.Grow(gzipSizeHint(raw) + bytes.MinRead) // ReadFrom needs MinRead free bytes to see EOF without growing
	_, err = io.Copy(&out, io.LimitReader(zr, maxDecompressed+1))
	if err == nil && out.Len() > maxDecompressed {
		err = errors.New("decompressed data larger than 4 GiB")
	}
	if err != nil {
		return fileData{}, formatErr(path, br.Size()-int64(br.Len()), err,
			"corrupt or truncated gzip stream (after %d decompressed bytes)", out.Len())
	}
	return fileData{b: out.Bytes(), gzip: true}, nil
}

// gzipSizeHint is the decompressed size a gzip file's trailer states (ISIZE,
// the size mod 2³²), so that the buffer is allocated once at its final size
// (a loaded dataset keeps it: see LoadIDX). It is only a hint: 0 when the
// file is too short, and never more than deflate's maximum expansion of the
// compressed size (about 1032:1) or maxDecompressed, so that a forged
// trailer cannot make a small file allocate gigabytes.
func gzipSizeHint(raw []byte) int {
	if len(raw) < 18 { // 10-byte header + 8-byte trailer
		return 0
	}
	isize := int64(binary.LittleEndian.Uint32(raw[len(raw)-4:]))
	return int(min(isize, 1032*int64(len(raw)), maxDecompressed))
}

// parseIDX checks the magic and dimensions of an IDX file and returns its
// dimensions and payload.
func parseIDX(path string, f fileData, magic uint32, ndim int) ([]int, []byte, error) {
	b := f.b
	hdr := 4 + 4*ndim
	if len(b) < 4 {
		return nil, nil, formatErr(path, int64(len(b)), nil, "truncated IDX header: %d of 4 magic bytes%s", len(b), f.note())
	}
	if got := binary.BigEndian.Uint32(b); got != magic {
		return nil, nil, formatErr(path, 0, nil, "wrong IDX magic 0x%08x, want 0x%08x%s", got, magic, f.note())
	}
	if len(b) < hdr {
		return nil, nil, formatErr(path, int64(len(b)), nil, "truncated IDX header: %d of %d bytes%s", len(b), hdr, f.note())
	}
	dims := make([]int, ndim)
	total := int64(1)
	for i := range dims {
		v := binary.BigEndian.Uint32(b[4+4*i:])
		dims[i] = int(v)
		if v != 0 && total > maxDecompressed/int64(v) {
			return nil, nil, formatErr(path, int64(4+4*i), nil, "IDX dimensions too large%s", f.note())
		}
		total *= int64(v)
	}
	if have := int64(len(b) - hdr); have < total {
		return nil, nil, formatErr(path, int64(len(b)), nil, "truncated IDX data: %d of %d payload bytes%s", have, total, f.note())
	} else if have > total {
		return nil, nil, formatErr(path, int64(hdr)+total, nil, "%d trailing bytes after the IDX data%s", have-total, f.note())
	}
	return dims, b[hdr:], nil
}
