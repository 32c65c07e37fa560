package data

import "fmt"

// LoaderOptions configures a Loader.
type LoaderOptions struct {
	// Seed keys both the epoch permutations and the augmentation.
	Seed uint64
	// NoAugment turns off the dataset's default training augmentation
	// (DefaultAugment of Info().Name).
	NoAugment bool
	// Augment, when non-nil, replaces the default augmentation (unless
	// NoAugment is set).
	Augment *Augment
	// NoShuffle makes every epoch the identity order.
	NoShuffle bool
	// Parallel is the number of goroutines preparing a batch's examples
	// (GOMAXPROCS when ≤ 0); it does not change the result.
	Parallel int
}

// Loader assembles training batches from a Source: which examples (the
// Sampler) and how they are augmented are pure functions of (Seed, step,
// worker, workers, batch), so any worker can recompute any step's batch.
type Loader struct {
	Source   Source
	Sampler  *Sampler
	Augment  Augment
	Seed     uint64
	Parallel int
}

// NewLoader returns a Loader over src.
func NewLoader(src Source, opts LoaderOptions) *Loader {
	info := src.Info()
	aug := DefaultAugment(info.Name)
	if opts.Augment != nil {
		aug = *opts.Augment
	}
	if opts.NoAugment {
		aug = Augment{}
	}
	return &Loader{
		Source:   src,
		Sampler:  &Sampler{Seed: opts.Seed, N: info.Len, NoShuffle: opts.NoShuffle},
		Augment:  aug,
		Seed:     opts.Seed,
		Parallel: opts.Parallel,
	}
}

// Batch fills x (batch·C·H·W values, CHW per image) and y (batch labels)
// with worker's share of step and returns the dataset indices used. Example
// j is augmented with AugmentRNG(Seed, step, worker, j).
func (l *Loader) Batch(step int64, worker, workers, batch int, x []float32, y []int32) ([]int, error) {
	if err := l.Sampler.check(step, worker, workers, batch); err != nil {
		return nil, err
	}
	idx := l.Sampler.Batch(step, worker, workers, batch)
	info := l.Source.Info()
	n := info.Size()
	if len(x) < batch*n || len(y) < batch {
		return nil, fmt.Errorf("data: batch buffers hold %d values and %d labels, need %d and %d", len(x), len(y), batch*n, batch)
	}
	aug := l.Augment
	err := parallelFor(batch, l.Parallel, func(j int) error {
		dst := x[j*n : (j+1)*n]
		if aug.IsZero() {
			var err error
			y[j], err = l.Source.Example(idx[j], dst)
			return err
		}
		tmp := make([]float32, n)
		var err error
		if y[j], err = l.Source.Example(idx[j], tmp); err != nil {
			return err
		}
		aug.Apply(dst, tmp, info.C, info.H, info.W, AugmentRNG(l.Seed, step, worker, j))
		return nil
	})
	if err != nil {
		return nil, err
	}
	return idx, nil
}

// Examples fills x and y with the given examples, without augmentation
// (for evaluation).
func (l *Loader) Examples(indices []int, x []float32, y []int32) error {
	n := l.Source.Info().Size()
	if len(x) < len(indices)*n || len(y) < len(indices) {
		return fmt.Errorf("data: buffers hold %d values and %d labels, need %d and %d", len(x), len(y), len(indices)*n, len(indices))
	}
	return parallelFor(len(indices), l.Parallel, func(j int) error {
		var err error
		y[j], err = l.Source.Example(indices[j], x[j*n:(j+1)*n])
		return err
	})
}
