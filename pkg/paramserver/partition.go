package paramserver

import (
	"fmt"

	"github.com/logitpair/logitpair/pkg/nn"
)

// ShardRange is one shard's part of the flat parameter vector: the half-open
// range [Lo, Hi) and the parts of the layout's tensors it holds.
type ShardRange struct {
	Index  int
	Lo, Hi int
	// Tensors are the tensors with elements inside [Lo, Hi), in layout
	// order, each with the part of it the shard holds. The first and the
	// last may be partial (a neighbouring shard holds the rest); the ones
	// between are whole. Tensors of size 0 hold no element and are listed
	// nowhere.
	Tensors []TensorSlice
}

// TensorSlice is the part [Lo, Hi) of one tensor's own flat values (0 is
// the tensor's first element, Size its whole length) that a shard holds.
type TensorSlice struct {
	Name         string
	Lo, Hi, Size int
}

// Whole reports whether the slice is all of its tensor.
func (s TensorSlice) Whole() bool { return s.Lo == 0 && s.Hi == s.Size }

// String returns the tensor's name, followed by [Lo:Hi] when the slice is
// only part of it (for logs and error messages).
func (s TensorSlice) String() string {
	if s.Whole() {
		return s.Name
	}
	return fmt.Sprintf("%s[%d:%d]", s.Name, s.Lo, s.Hi)
}

// Size returns Hi − Lo.
func (r ShardRange) Size() int { return r.Hi - r.Lo }

// Partition cuts the flat vector of layout (of layout.Total parameters T)
// into shards (S) contiguous ranges balanced by size, cutting anywhere,
// inside tensors too: shard k holds [k·q + min(k, m), (k+1)·q + min(k+1, m))
// where q = ⌊T/S⌋ and m = T mod S: the first m shards hold q+1 parameters
// and the others q, so sizes differ by at most one.
//
// Why not cut at tensor boundaries: a shard's work (the bytes every worker
// pulls and pushes, the optimizer step) is proportional to its size, and a
// model's tensors are far from equal — madry-mnist's fc1.weight is 98% of
// its 3.27M parameters — so whole-tensor shards leave one shard with nearly
// everything and allow no more shards than tensors (8 for madry-mnist, while
// the design card runs 17). Splitting a tensor changes no result: every
// rule after the mean of the gradients is elementwise (weight decay over
// the decayed ranges clipped to the shard, the optimizer, the EMA), so S
// shards give the same bits as one.
//
// It is an error when shards is below 1 or above T (every shard holds at
// least one parameter), or when the layout's ranges are not back to back
// from offset 0 (as nn.NewLayout lays them out) or do not add up to
// layout.Total.
func Partition(layout nn.Layout, shards int) ([]ShardRange, error) {
	off := 0
	for _, r := range layout.Ranges {
		if r.Offset != off || r.Size < 0 {
			return nil, fmt.Errorf("paramserver: Partition: tensor %q at offset %d size %d, want offset %d (tensors must be back to back)", r.Name, r.Offset, r.Size, off)
		}
		off += r.Size
	}
	if off != layout.Total {
		return nil, fmt.Errorf("paramserver: Partition: tensors add up to %d, layout total is %d", off, layout.Total)
	}
	total := layout.Total
	if shards < 1 {
		return nil, fmt.Errorf("paramserver: Partition: need at least 1 shard, got %d", shards)
	}
	if shards > total {
		return nil, fmt.Errorf("paramserver: Partition: %d shards for %d parameters: every shard holds at least one parameter, so use at most %d shards", shards, total, total)
	}
	q, m := total/shards, total%shards
	edge := func(k int) int { return k*q + min(k, m) }
	out := make([]ShardRange, shards)
	t := 0 // the first tensor that may overlap the current shard
	for k := range out {
		lo, hi := edge(k), edge(k+1)
		out[k] = ShardRange{Index: k, Lo: lo, Hi: hi}
		for ; t < len(layout.Ranges); t++ {
			r := layout.Ranges[t]
			if r.Offset >= hi {
				break
			}
			if a, b := max(r.Offset, lo), min(r.Offset+r.Size, hi); a < b {
				out[k].Tensors = append(out[k].Tensors, TensorSlice{Name: r.Name, Lo: a - r.Offset, Hi: b - r.Offset, Size: r.Size})
			}
			if r.Offset+r.Size > hi { // continues in the next shard
				break
			}
		}
	}
	return out, nil
}

// BufferRange returns the range [lo, hi) of the flat buffer vector (of total
// length total) owned by shard index: all of it for shard 0, none for the
// others. See the package documentation for why.
func BufferRange(index, total int) (lo, hi int) {
	if index == 0 {
		return 0, total
	}
	return 0, 0
}

// ConfigFor returns base with the shard's index and parameter range from r,
// and its buffer range from BufferRange(r.Index, bufTotal).
func ConfigFor(base ShardConfig, r ShardRange, bufTotal int) ShardConfig {
	c := base
	c.Index, c.Lo, c.Hi = r.Index, r.Lo, r.Hi
	c.BufLo, c.BufHi = BufferRange(r.Index, bufTotal)
	return c
}
