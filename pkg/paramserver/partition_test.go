package paramserver

import (
	"slices"
	"strings"
	"testing"

	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/optim"
)

// optimalMax is the smallest possible largest shard, by dynamic programming
// over all contiguous partitions into k non-empty groups.
func optimalMax(sizes []int, k int) int {
	m := len(sizes)
	prefix := make([]int, m+1)
	for i, s := range sizes {
		prefix[i+1] = prefix[i] + s
	}
	const inf = int(^uint(0) >> 1)
	// best[j][i]: first i tensors in j groups.
	best := make([][]int, k+1)
	for j := range best {
		best[j] = make([]int, m+1)
		for i := range best[j] {
			best[j][i] = inf
		}
	}
	best[0][0] = 0
	for j := 1; j <= k; j++ {
		for i := j; i <= m; i++ {
			for p := j - 1; p < i; p++ {
				if best[j-1][p] == inf {
					continue
				}
				best[j][i] = min(best[j][i], max(best[j-1][p], prefix[i]-prefix[p]))
			}
		}
	}
	return best[k][m]
}

// checkPartition checks that parts cut layout into k contiguous non-empty
// ranges at tensor edges and returns the largest range.
func checkPartition(t *testing.T, layout nn.Layout, parts []ShardRange, k int) int {
	t.Helper()
	if len(parts) != k {
		t.Fatalf("%d parts, want %d", len(parts), k)
	}
	edges := map[int]bool{layout.Total: true}
	owner := map[string]int{}
	for _, r := range layout.Ranges {
		edges[r.Offset] = true
	}
	lo, largest, tensor := 0, 0, 0
	for i, p := range parts {
		if p.Index != i || p.Lo != lo || p.Hi < p.Lo || !edges[p.Lo] || !edges[p.Hi] {
			t.Fatalf("part %d = %+v: want index %d, Lo %d, both ends at tensor edges", i, p, i, lo)
		}
		if len(p.Tensors) == 0 {
			t.Fatalf("part %d holds no tensor", i)
		}
		size := 0
		for _, name := range p.Tensors {
			r := layout.Ranges[tensor]
			if r.Name != name || r.Offset < p.Lo || r.Offset+r.Size > p.Hi {
				t.Fatalf("part %d lists %q, want %q inside [%d,%d)", i, name, r.Name, p.Lo, p.Hi)
			}
			owner[name] = i
			size += r.Size
			tensor++
		}
		if size != p.Size() {
			t.Fatalf("part %d: tensors add to %d, range is %d", i, size, p.Size())
		}
		largest = max(largest, p.Size())
		lo = p.Hi
	}
	if lo != layout.Total || tensor != len(layout.Ranges) {
		t.Fatalf("parts cover [0,%d) and %d tensors, want [0,%d) and %d", lo, tensor, layout.Total, len(layout.Ranges))
	}
	return largest
}

func sizesOf(l nn.Layout) []int {
	var s []int
	for _, r := range l.Ranges {
		s = append(s, r.Size)
	}
	return s
}

func TestPartitionMadry(t *testing.T) {
	l := madryLayout()
	for k := 1; k <= len(l.Ranges); k++ {
		parts, err := Partition(l, k)
		if err != nil {
			t.Fatalf("k=%d: %v", k, err)
		}
		got := checkPartition(t, l, parts, k)
		if want := optimalMax(sizesOf(l), k); got != want {
			t.Errorf("k=%d: largest shard %d, optimum %d (%+v)", k, got, want, parts)
		}
	}
	// Two shards: fc1.weight (3.2M of 3.27M) cannot be split; the best is
	// the convolutions with fc1.weight or fc1.weight with the rest.
	parts, _ := Partition(l, 2)
	if parts[1].Size() != 3211264+1024+10240+10 || !slices.Equal(parts[0].Tensors, madryNames[:4]) {
		t.Errorf("2 shards: %+v", parts)
	}
	// Three shards: fc1.weight alone.
	parts, _ = Partition(l, 3)
	if !slices.Equal(parts[1].Tensors, []string{"fc1.weight"}) {
		t.Errorf("3 shards: middle shard %v, want fc1.weight alone", parts[1].Tensors)
	}
}

func TestPartitionEqualTensors(t *testing.T) {
	names := make([]string, 12)
	sizes := make([]int, 12)
	for i := range names {
		names[i], sizes[i] = "t"+strings.Repeat("x", i), 100
	}
	l := layoutOf(names, sizes)
	for k, want := range map[int]int{1: 1200, 2: 600, 3: 400, 4: 300, 5: 300, 6: 200, 7: 200, 12: 100} {
		parts, err := Partition(l, k)
		if err != nil {
			t.Fatal(err)
		}
		if got := checkPartition(t, l, parts, k); got != want {
			t.Errorf("k=%d: largest %d, want %d", k, got, want)
		}
	}
	parts, _ := Partition(l, 4)
	for _, p := range parts {
		if p.Size() != 300 {
			t.Errorf("4 shards of 12 equal tensors: %+v", parts)
		}
	}
}

func TestPartitionOptimalOnVariedLayouts(t *testing.T) {
	for seed := uint64(1); seed <= 40; seed++ {
		v := vec(3+int(seed%9), 1, seed)
		names := make([]string, len(v))
		sizes := make([]int, len(v))
		for i, x := range v {
			names[i] = strings.Repeat("n", i+1)
			sizes[i] = 1 + int((x+1)*500)%997
			if i%4 == 0 {
				sizes[i] *= 20 // a few tensors far above the average
			}
		}
		l := layoutOf(names, sizes)
		for k := 1; k <= len(sizes); k++ {
			parts, err := Partition(l, k)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := checkPartition(t, l, parts, k), optimalMax(sizes, k); got != want {
				t.Fatalf("seed %d sizes %v k=%d: largest %d, optimum %d", seed, sizes, k, got, want)
			}
		}
	}
}

func TestPartitionErrors(t *testing.T) {
	l := madryLayout()
	for _, k := range []int{0, -1, 9} {
		if _, err := Partition(l, k); err == nil {
			t.Errorf("Partition(madry, %d): no error", k)
		}
	}
	gap := madryLayout()
	gap.Ranges[3].Offset++
	if _, err := Partition(gap, 2); err == nil {
		t.Error("layout with a gap: no error")
	}
	short := madryLayout()
	short.Total--
	if _, err := Partition(short, 2); err == nil {
		t.Error("layout whose total disagrees: no error")
	}
	if _, err := Partition(nn.Layout{}, 1); err == nil {
		t.Error("empty layout: no error")
	}
}

func TestDecayRangesAndConfigFor(t *testing.T) {
	l := smallLayout()
	d := DecayRanges(l)
	want := []optim.Range{optim.Range{Lo: 0, Hi: 40}, optim.Range{Lo: 44, Hi: 140}, optim.Range{Lo: 148, Hi: 448}, optim.Range{Lo: 460, Hi: 496}}
	if !slices.Equal(d, want) {
		t.Errorf("DecayRanges = %v, want %v", d, want)
	}
	parts, _ := Partition(l, 2)
	c0, c1 := ConfigFor(DefaultConfig(), parts[0], 7), ConfigFor(DefaultConfig(), parts[1], 7)
	if c0.BufLo != 0 || c0.BufHi != 7 || c1.BufLo != 0 || c1.BufHi != 0 || c1.Index != 1 || c1.Lo != parts[1].Lo || c1.Hi != parts[1].Hi {
		t.Errorf("ConfigFor: %+v %+v", c0, c1)
	}
}
