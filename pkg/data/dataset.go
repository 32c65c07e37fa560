package data

import (
	"fmt"
	"runtime"
	"sync"
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

// Dataset is an in-memory dataset. Image i is Images[i*C*H*W : (i+1)*C*H*W]
// in CHW order with values in [0,1]; its label is Labels[i].
type Dataset struct {
	Name       string
	C, H, W    int
	Classes    int
	Images     []float32 // N·C·H·W
	Labels     []int32   // N
	ClassNames []string  // optional, index = label
}

// Len is the number of examples.
func (d *Dataset) Len() int { return len(d.Labels) }

// Info implements Source.
func (d *Dataset) Info() Info {
	return Info{Name: d.Name, C: d.C, H: d.H, W: d.W, Classes: d.Classes, Len: len(d.Labels)}
}

// Image returns image i as a sub-slice of Images (not a copy).
func (d *Dataset) Image(i int) []float32 {
	n := d.C * d.H * d.W
	return d.Images[i*n : (i+1)*n : (i+1)*n]
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
	copy(dst[:n], d.Images[i*n:(i+1)*n])
	return d.Labels[i], nil
}

// Validate checks the internal consistency of d: shape, lengths, label range
// and pixel range.
func (d *Dataset) Validate() error {
	if d.C <= 0 || d.H <= 0 || d.W <= 0 || d.Classes <= 0 {
		return fmt.Errorf("data: %s: bad shape %dx%dx%d or classes %d", d.Name, d.C, d.H, d.W, d.Classes)
	}
	n := d.C * d.H * d.W
	if len(d.Images) != n*len(d.Labels) {
		return fmt.Errorf("data: %s: %d image values for %d labels of size %d", d.Name, len(d.Images), len(d.Labels), n)
	}
	for i, l := range d.Labels {
		if l < 0 || int(l) >= d.Classes {
			return fmt.Errorf("data: %s: label %d of example %d out of range [0,%d)", d.Name, l, i, d.Classes)
		}
	}
	for i, v := range d.Images {
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
// returns the dataset itself.
func Materialize(src Source, parallel int) (*Dataset, error) {
	if d, ok := src.(*Dataset); ok {
		return d, nil
	}
	info := src.Info()
	n := info.Size()
	d := &Dataset{Name: info.Name, C: info.C, H: info.H, W: info.W, Classes: info.Classes,
		Images: make([]float32, n*info.Len), Labels: make([]int32, info.Len)}
	if f, ok := src.(*ImageFolder); ok {
		d.ClassNames = f.ClassNames
	}
	err := parallelFor(info.Len, parallel, func(i int) error {
		l, err := src.Example(i, d.Images[i*n:(i+1)*n])
		d.Labels[i] = l
		return err
	})
	if err != nil {
		return nil, err
	}
	return d, nil
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
