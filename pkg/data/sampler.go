package data

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"sync"
)

// Sampler assigns dataset indices to the batches of a synchronous
// data-parallel run, as a pure function of (Seed, step, worker, workers,
// batch).
//
// The scheme: the training run reads one infinite stream of examples,
// epoch after epoch. Epoch e is a permutation of 0…N-1 (the identity when
// NoShuffle is set), drawn by a Fisher–Yates shuffle from a ChaCha8
// generator (math/rand/v2) keyed by (Seed, e) — see Permutation. Stream
// position p holds example Permutation(p / N)[p % N]. Step s consumes the
// workers·batch positions starting at s·workers·batch, interleaved among
// the workers: worker w's j-th example is at position
//
//	s·workers·batch + j·workers + w.
//
// So, whatever N is, every example appears exactly once in each epoch's
// stretch of N positions, across all workers. When workers·batch divides N,
// each step lies within a single epoch and an epoch is exactly
// N/(workers·batch) steps. Otherwise a step can straddle two epochs: it
// takes the tail of epoch e and the head of e+1 (no example is dropped or
// padded), and such a step may then contain the same example twice, once
// from each epoch. Changing workers or batch mid-run re-slices the stream
// from then on, so keep them fixed or restart at a step boundary computed
// with the new values.
//
// A Sampler is safe for concurrent use; it caches a few recent
// permutations.
type Sampler struct {
	Seed      uint64
	N         int
	NoShuffle bool

	mu    sync.Mutex
	cache []cachedPerm
}

type cachedPerm struct {
	epoch int64
	perm  []int
}

const samplerCache = 4

// NewSampler returns a shuffling Sampler over n examples.
func NewSampler(n int, seed uint64) *Sampler { return &Sampler{Seed: seed, N: n} }

// Domain tags keep the generators for different purposes independent.
var (
	tagPerm    = [8]byte{'p', 'e', 'r', 'm'}
	tagAugment = [8]byte{'a', 'u', 'g', 'm', 'e', 'n', 't'}
)

// chachaKey builds a ChaCha8 seed from (seed, a, b, c, tag): bytes 0–7
// seed, 8–15 a, 16–19 b, 20–23 c (little-endian), 24–31 the tag.
func chachaKey(seed uint64, a int64, b, c uint32, tag [8]byte) *rand.ChaCha8 {
	var k [32]byte
	binary.LittleEndian.PutUint64(k[0:], seed)
	binary.LittleEndian.PutUint64(k[8:], uint64(a))
	binary.LittleEndian.PutUint32(k[16:], b)
	binary.LittleEndian.PutUint32(k[20:], c)
	copy(k[24:], tag[:])
	return rand.NewChaCha8(k)
}

// uniform returns a uniform integer in [0, n) from r's 64-bit outputs
// (Lemire's multiply-and-reject method). It is written out here, not taken
// from rand.Rand, so that the stream is fixed by this code alone.
func uniform(r *rand.ChaCha8, n uint64) uint64 {
	hi, lo := bits.Mul64(r.Uint64(), n)
	if lo < n {
		thresh := -n % n
		for lo < thresh {
			hi, lo = bits.Mul64(r.Uint64(), n)
		}
	}
	return hi
}

// Permutation returns epoch's permutation of 0…N-1: starting from the
// identity, for i = N-1 down to 1, swap i with uniform(i+1), uniform drawing
// from ChaCha8 keyed by (Seed, epoch, tag "perm"). The returned slice is
// shared: do not modify it.
func (s *Sampler) Permutation(epoch int64) []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, c := range s.cache {
		if c.epoch == epoch && len(c.perm) == s.N {
			if i != 0 { // move to front
				copy(s.cache[1:i+1], s.cache[:i])
				s.cache[0] = c
			}
			return c.perm
		}
	}
	p := make([]int, s.N)
	for i := range p {
		p[i] = i
	}
	if !s.NoShuffle {
		r := chachaKey(s.Seed, epoch, 0, 0, tagPerm)
		for i := len(p) - 1; i > 0; i-- {
			j := uniform(r, uint64(i+1))
			p[i], p[j] = p[j], p[i]
		}
	}
	if len(s.cache) < samplerCache {
		s.cache = append(s.cache, cachedPerm{})
	}
	copy(s.cache[1:], s.cache[:len(s.cache)-1])
	s.cache[0] = cachedPerm{epoch, p}
	return p
}

// Index returns the example at stream position pos (N must be positive).
func (s *Sampler) Index(pos int64) int {
	n := int64(s.N)
	return s.Permutation(pos / n)[pos%n]
}

// Position returns the stream position of worker's j-th example at step.
func Position(step int64, worker, workers, batch, j int) int64 {
	return step*int64(workers)*int64(batch) + int64(j)*int64(workers) + int64(worker)
}

// Epoch returns the (fractional) epoch reached at the start of step.
func (s *Sampler) Epoch(step int64, workers, batch int) float64 {
	return float64(step) * float64(workers) * float64(batch) / float64(s.N)
}

// Batch returns the dataset indices of worker's share (batch examples) of
// step, for a run of workers workers. It panics on arguments no run can
// have: N ≤ 0, step < 0, batch ≤ 0, workers ≤ 0 or worker outside
// [0, workers).
func (s *Sampler) Batch(step int64, worker, workers, batch int) []int {
	if err := s.check(step, worker, workers, batch); err != nil {
		panic(err)
	}
	out := make([]int, batch)
	for j := range out {
		out[j] = s.Index(Position(step, worker, workers, batch, j))
	}
	return out
}

func (s *Sampler) check(step int64, worker, workers, batch int) error {
	switch {
	case s.N <= 0:
		return fmt.Errorf("data: sampler over %d examples", s.N)
	case step < 0:
		return fmt.Errorf("data: negative step %d", step)
	case batch <= 0 || workers <= 0:
		return fmt.Errorf("data: batch %d and workers %d must be positive", batch, workers)
	case worker < 0 || worker >= workers:
		return fmt.Errorf("data: worker %d outside [0,%d)", worker, workers)
	}
	return nil
}
