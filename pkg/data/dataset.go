package data

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
)

// Info describes a Source.
type Info struct {
	Name    string // dataset name, e.g. "mnist", "cifar10"; selects the default augmentation
	C, H, W int    // image shape, CHW
	Classes int    // labels are in [0, Classes)
	Len     int    // number of examples
}

// Size is the number of float32 values in one image, C·H·W.
func (in Info) Size() int { return in.C * in.H * in.W }

// Fits checks that the dataset's images have a model's input shape (C, H, W)
// and its labels fit the model's classes; the error names the dataset, the
// model and what to change.
func (in Info) Fits(model string, input [3]int, classes int) error {
	if in.C != input[0] || in.H != input[1] || in.W != input[2] {
		return fmt.Errorf("%s images are %d×%d×%d, model %s expects %d×%d×%d (image-folder datasets take the model's image_size; the others need a model of their shape)",
			in.Name, in.C, in.H, in.W, model, input[0], input[1], input[2])
	}
	if in.Classes > classes {
		return fmt.Errorf("%s has %d classes, model %s has %d: set its \"classes\" in --model-config", in.Name, in.Classes, model, classes)
	}
	return nil
}

// Source is a dataset of labelled images, in memory or decoded on demand.
// Implementations must be safe for concurrent calls of Example.
type Source interface {
	Info() Info
	// Example writes image i (C·H·W values in [0,1], CHW order) into dst,
	// which must have length at least Info().Size(), and returns its label.
	Example(i int, dst []float32) (int32, error)
}

// Dataset is an in-memory dataset of N examples; example i's label is
// Labels[i]. Its images are held one of two ways:
//
//   - Pixels, for 8-bit sources (MNIST, Fashion-MNIST, CIFAR-10, SVHN stored
//     as uint8, image folders whose decoded values are all k/255): image i
//     is Pixels[i*C*H*W : (i+1)*C*H*W], CHW, byte b meaning the value b/255
//     ([PixelValue]). Images is nil.
//   - Images, for anything else: image i is Images[i*C*H*W : (i+1)*C*H*W],
//     CHW, float32 values in [0,1]. Pixels is nil.
//
// Bytes take a quarter of float32's memory, which matters when one machine
// runs many cluster workers that each hold the training set (MNIST: 47 MB
// instead of 188 MB per process). [Dataset.Example] converts an image per
// call, into exactly the float32 values the loaders stored before, so the
// choice is invisible to batches. Read images through Example or Image,
// never by indexing either slice, so that both layouts work.
//
// Opened with OpenOptions.Shared, Pixels is a read-only memory mapping of a
// cache file that all the processes of a machine share (see Open): never
// write into it (the process would crash), and see Close for its lifetime.
type Dataset struct {
	Name       string
	C, H, W    int
	Classes    int
	Pixels     []uint8   // N·C·H·W bytes of an 8-bit source, or nil
	Images     []float32 // N·C·H·W float32 values when Pixels is nil
	Labels     []int32   // N
	ClassNames []string  // optional, index = label

	// mapped is the read-only file mapping Pixels points into when the
	// dataset was opened with OpenOptions.Shared (nil otherwise); see Close.
	mapped *mapping
}

// pixelValues[b] is b/255 as float32: the one conversion of 8-bit pixels,
// the same division the loaders used when they stored float32.
var pixelValues = func() (lut [256]float32) {
	for i := range lut {
		lut[i] = float32(i) / 255
	}
	return lut
}()

// PixelValue is the float32 value in [0,1] of the 8-bit pixel b: b/255.
func PixelValue(b uint8) float32 { return pixelValues[b] }

// bytesToFloat writes b/255 into dst (len(dst) ≥ len(b)).
func bytesToFloat(dst []float32, b []byte) {
	dst = dst[:len(b)]
	for i, v := range b {
		dst[i] = pixelValues[v]
	}
}

// Len is the number of examples.
func (d *Dataset) Len() int { return len(d.Labels) }

// Info implements Source.
func (d *Dataset) Info() Info {
	return Info{Name: d.Name, C: d.C, H: d.H, W: d.W, Classes: d.Classes, Len: len(d.Labels)}
}

// Image returns a copy of image i as C·H·W float32 values (CHW, in [0,1]).
// It allocates; Example fills a caller's buffer instead.
func (d *Dataset) Image(i int) []float32 {
	n := d.C * d.H * d.W
	out := make([]float32, n)
	if d.Pixels != nil {
		bytesToFloat(out, d.Pixels[i*n:(i+1)*n])
	} else {
		copy(out, d.Images[i*n:(i+1)*n])
	}
	return out
}

// Example implements Source.
func (d *Dataset) Example(i int, dst []float32) (int32, error) {
	if i < 0 || i >= len(d.Labels) {
		return 0, fmt.Errorf("data: %s: example %d out of range [0,%d)", d.Name, i, len(d.Labels))
	}
	n := d.C * d.H * d.W
	if len(dst) < n {
		return 0, fmt.Errorf("data: %s: destination has %d values, need %d", d.Name, len(dst), n)
	}
	if d.Pixels != nil {
		bytesToFloat(dst, d.Pixels[i*n:(i+1)*n])
	} else {
		copy(dst[:n], d.Images[i*n:(i+1)*n])
	}
	return d.Labels[i], nil
}

// Validate checks the internal consistency of d: shape, lengths, label range
// and pixel range.
func (d *Dataset) Validate() error {
	if d.C <= 0 || d.H <= 0 || d.W <= 0 || d.Classes <= 0 {
		return fmt.Errorf("data: %s: bad shape %dx%dx%d or classes %d", d.Name, d.C, d.H, d.W, d.Classes)
	}
	n := d.C * d.H * d.W
	switch {
	case d.Pixels != nil && d.Images != nil:
		return fmt.Errorf("data: %s: both Pixels (%d bytes) and Images (%d values) are set; a dataset holds one", d.Name, len(d.Pixels), len(d.Images))
	case d.Pixels != nil && len(d.Pixels) != n*len(d.Labels):
		return fmt.Errorf("data: %s: %d pixel bytes for %d labels of size %d", d.Name, len(d.Pixels), len(d.Labels), n)
	case d.Pixels == nil && len(d.Images) != n*len(d.Labels):
		return fmt.Errorf("data: %s: %d image values for %d labels of size %d", d.Name, len(d.Images), len(d.Labels), n)
	}
	for i, l := range d.Labels {
		if l < 0 || int(l) >= d.Classes {
			return fmt.Errorf("data: %s: label %d of example %d out of range [0,%d)", d.Name, l, i, d.Classes)
		}
	}
	for i, v := range d.Images { // bytes are in range by construction
		if !(v >= 0 && v <= 1) {
			return fmt.Errorf("data: %s: pixel value %v at %d outside [0,1]", d.Name, v, i)
		}
	}
	return nil
}

// FormatError reports bad input data: a truncated, corrupt or wrong-magic
// file, a count mismatch or an out-of-range label. Offset is the byte offset
// in File where the problem was found (see the package documentation for
// compressed files); it is -1 when no offset applies.
type FormatError struct {
	File   string
	Offset int64
	Msg    string
	Err    error // underlying error, if any (e.g. from compress/flate)
}

func (e *FormatError) Error() string {
	s := fmt.Sprintf("data: %s: offset %d: %s", e.File, e.Offset, e.Msg)
	if e.Offset < 0 {
		s = fmt.Sprintf("data: %s: %s", e.File, e.Msg)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *FormatError) Unwrap() error { return e.Err }

func formatErr(file string, off int64, err error, format string, args ...any) *FormatError {
	return &FormatError{File: file, Offset: off, Msg: fmt.Sprintf(format, args...), Err: err}
}

// Materialize decodes every example of src into memory, using up to
// parallel goroutines (GOMAXPROCS when parallel <= 0). For a *Dataset it
// returns the dataset itself. The result holds bytes (Pixels) when every
// decoded value is exactly some k/255, as an 8-bit image folder's are when
// no resizing interpolates; otherwise float32 (Images). Either way Example
// returns the values src decoded, bit for bit.
func Materialize(src Source, parallel int) (*Dataset, error) {
	if d, ok := src.(*Dataset); ok {
		return d, nil
	}
	info := src.Info()
	n := info.Size()
	d := &Dataset{Name: info.Name, C: info.C, H: info.H, W: info.W, Classes: info.Classes,
		Pixels: make([]uint8, n*info.Len), Labels: make([]int32, info.Len)}
	if f, ok := src.(*ImageFolder); ok {
		d.ClassNames = f.ClassNames
	}
	// First as bytes; the first value that is not k/255 stops that pass
	// (the other goroutines skip their remaining examples) and the dataset
	// is decoded again as float32.
	var notBytes atomic.Bool
	errNotBytes := errors.New("not 8-bit")
	bufs := sync.Pool{New: func() any { b := make([]float32, n); return &b }}
	err := parallelFor(info.Len, parallel, func(i int) error {
		if notBytes.Load() {
			return errNotBytes
		}
		bp := bufs.Get().(*[]float32)
		defer bufs.Put(bp)
		l, err := src.Example(i, *bp)
		if err != nil {
			return err
		}
		d.Labels[i] = l
		if !floatToBytes(d.Pixels[i*n:(i+1)*n], *bp) {
			notBytes.Store(true)
			return errNotBytes
		}
		return nil
	})
	if err == nil {
		return d, nil
	}
	if !notBytes.Load() {
		return nil, err
	}
	d.Pixels, d.Images = nil, make([]float32, n*info.Len)
	err = parallelFor(info.Len, parallel, func(i int) error {
		l, err := src.Example(i, d.Images[i*n:(i+1)*n])
		d.Labels[i] = l
		return err
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// floatToBytes stores src as bytes in dst when every value is bit for bit
// PixelValue of some byte, and reports whether it was.
func floatToBytes(dst []uint8, src []float32) bool {
	for i, v := range src {
		if !(v >= 0 && v <= 1) {
			return false
		}
		b := uint8(v*255 + 0.5)
		if math.Float32bits(pixelValues[b]) != math.Float32bits(v) {
			return false
		}
		dst[i] = b
	}
	return true
}

// parallelFor runs f(0..n-1) on up to par goroutines and returns the error of
// the lowest index that failed (so the reported error is deterministic).
func parallelFor(n, par int, f func(i int) error) error {
	if par <= 0 {
		par = runtime.GOMAXPROCS(0)
	}
	if par > n {
		par = n
	}
	if par <= 1 {
		for i := 0; i < n; i++ {
			if err := f(i); err != nil {
				return err
			}
		}
		return nil
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	next := 0
	for g := 0; g < par; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n {
					return
				}
				errs[i] = f(i)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// Tail is a view of the last n examples of src (all of them when n ≤ 0 or
// n ≥ its length), in order. Training validates on the test split's tail,
// so that the examples it selects the best checkpoint on are not the first
// ones that evaluations score.
func Tail(src Source, n int) Source {
	in := src.Info()
	if n <= 0 || n >= in.Len {
		return src
	}
	return tail{src: src, off: in.Len - n, n: n}
}

type tail struct {
	src    Source
	off, n int
}

func (t tail) Info() Info {
	in := t.src.Info()
	in.Len = t.n
	return in
}

func (t tail) Example(i int, dst []float32) (int32, error) {
	if i < 0 || i >= t.n {
		return 0, fmt.Errorf("data: example %d of a %d-example tail of %s", i, t.n, t.src.Info().Name)
	}
	return t.src.Example(t.off+i, dst)
}
