package paramserver

import (
	"fmt"

	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/optim"
)

// ShardRange is one shard's part of the flat parameter vector: the half-open
// range [Lo, Hi) and the names of the tensors it holds, in layout order.
type ShardRange struct {
	Index  int
	Lo, Hi int
	// Tensors are the names of the layout's tensors inside [Lo, Hi).
	Tensors []string
}

// Size returns Hi − Lo.
func (r ShardRange) Size() int { return r.Hi - r.Lo }

// Partition cuts the flat vector of layout into shards contiguous ranges at
// tensor boundaries, each holding at least one tensor, so that the largest
// range is as small as possible (the linear-partition problem, solved
// exactly):
//
//   - the optimal bound L* is found by binary search on L in
//     [largest tensor, total]: L is feasible when the greedy left-to-right
//     packing (start a new shard when the next tensor would exceed L) uses at
//     most shards ranges, and greedy packing uses the fewest ranges of any
//     packing under L, so the smallest feasible L is the optimum;
//   - the ranges are then built by the same greedy packing under L*, except
//     that once the tensors left are exactly as many as the shards still to
//     open, each gets a shard of its own, so there are exactly shards ranges
//     and none exceeds L*.
//
// A tensor larger than the average is never split; it may end up alone in a
// shard. It takes O(tensors · log total) time. It is an error when shards is
// below 1 or above the number of tensors, or when the layout's ranges are not
// back to back from offset 0 (as nn.NewLayout lays them out) or do not add up
// to layout.Total.
func Partition(layout nn.Layout, shards int) ([]ShardRange, error) {
	m := len(layout.Ranges)
	if shards < 1 {
		return nil, fmt.Errorf("paramserver: Partition: need at least 1 shard, got %d", shards)
	}
	if shards > m {
		return nil, fmt.Errorf("paramserver: Partition: %d shards for %d tensors (at most one shard per tensor)", shards, m)
	}
	off, largest := 0, 0
	for _, r := range layout.Ranges {
		if r.Offset != off || r.Size < 0 {
			return nil, fmt.Errorf("paramserver: Partition: tensor %q at offset %d size %d, want offset %d (tensors must be back to back)", r.Name, r.Offset, r.Size, off)
		}
		off += r.Size
		largest = max(largest, r.Size)
	}
	if off != layout.Total {
		return nil, fmt.Errorf("paramserver: Partition: tensors add up to %d, layout total is %d", off, layout.Total)
	}
	// count returns how many ranges greedy packing under bound uses.
	count := func(bound int) int {
		n, cur := 1, 0
		for _, r := range layout.Ranges {
			if cur > 0 && cur+r.Size > bound {
				n, cur = n+1, 0
			}
			cur += r.Size
		}
		return n
	}
	lo, hi := largest, off
	for lo < hi {
		mid := lo + (hi-lo)/2
		if count(mid) <= shards {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	bound := lo

	out := make([]ShardRange, 0, shards)
	cur := ShardRange{Index: 0, Lo: 0, Hi: 0}
	for i, r := range layout.Ranges {
		left := m - i                   // tensors i.. still to place
		toOpen := shards - len(out) - 1 // shards after the current one
		if len(cur.Tensors) > 0 && (cur.Size()+r.Size > bound || left == toOpen) {
			out = append(out, cur)
			cur = ShardRange{Index: len(out), Lo: r.Offset, Hi: r.Offset}
		}
		cur.Hi += r.Size
		cur.Tensors = append(cur.Tensors, r.Name)
	}
	out = append(out, cur)
	if len(out) != shards { // cannot happen: see the doc comment
		return nil, fmt.Errorf("paramserver: Partition: internal error: built %d shards, want %d", len(out), shards)
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

// DecayRanges returns the weight-decay mask of a layout in global
// coordinates: the ranges of the tensors whose Role.Decayed() is true (conv
// and dense kernels).
func DecayRanges(layout nn.Layout) []optim.Range {
	var out []optim.Range
	for _, r := range layout.Ranges {
		if r.Role.Decayed() {
			out = append(out, optim.Range{Lo: r.Offset, Hi: r.Offset + r.Size})
		}
	}
	return out
}

// ConfigFor returns base with the shard's index and parameter range from r,
// and its buffer range from BufferRange(r.Index, bufTotal).
func ConfigFor(base ShardConfig, r ShardRange, bufTotal int) ShardConfig {
	c := base
	c.Index, c.Lo, c.Hi = r.Index, r.Lo, r.Hi
	c.BufLo, c.BufHi = BufferRange(r.Index, bufTotal)
	return c
}
