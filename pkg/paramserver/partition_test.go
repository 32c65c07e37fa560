package paramserver

import (
	"fmt"
	"github.com/logitpair/logitpair/pkg/train"
	"slices"
	"strings"
	"testing"

	"github.com/logitpair/logitpair/pkg/nn"
	"github.com/logitpair/logitpair/pkg/optim"
)

// checkPartition checks that parts cut layout into k contiguous ranges
// covering [0, Total), each non-empty, whose sizes differ by at most one,
// and that the tensor slices each lists are exactly the layout's tensors
// inside its range, back to back: only the first and the last partial, and
// every element of every tensor listed once over all shards.
func checkPartition(t *testing.T, layout nn.Layout, parts []ShardRange, k int) {
	t.Helper()
	if len(parts) != k {
		t.Fatalf("%d parts, want %d", len(parts), k)
	}
	small, large := layout.Total, 0
	next := map[string]int{} // the next element of each tensor to be listed
	lo := 0
	for i, p := range parts {
		if p.Index != i || p.Lo != lo || p.Hi <= p.Lo {
			t.Fatalf("part %d = [%d,%d) index %d: want index %d, Lo %d, non-empty", i, p.Lo, p.Hi, p.Index, i, lo)
		}
		small, large = min(small, p.Size()), max(large, p.Size())
		at := p.Lo // the global offset the next slice must start at
		for j, s := range p.Tensors {
			var r nn.Range
			for _, x := range layout.Ranges {
				if x.Name == s.Name {
					r = x
				}
			}
			if s.Size != r.Size || s.Lo < 0 || s.Hi > s.Size || s.Lo >= s.Hi || r.Offset+s.Lo != at || next[s.Name] != s.Lo {
				t.Fatalf("part %d [%d,%d) lists %+v; tensor %q is [%d,%d), want a slice starting at global %d, element %d", i, p.Lo, p.Hi, s, r.Name, r.Offset, r.Offset+r.Size, at, next[s.Name])
			}
			if !s.Whole() && j != 0 && j != len(p.Tensors)-1 {
				t.Fatalf("part %d: %v is partial but neither first nor last", i, s)
			}
			next[s.Name] = s.Hi
			at = r.Offset + s.Hi
		}
		if at != p.Hi {
			t.Fatalf("part %d [%d,%d): its tensor slices end at %d", i, p.Lo, p.Hi, at)
		}
		lo = p.Hi
	}
	if lo != layout.Total {
		t.Fatalf("parts cover [0,%d), want [0,%d)", lo, layout.Total)
	}
	if large-small > 1 {
		t.Fatalf("sizes from %d to %d: not balanced", small, large)
	}
	for _, r := range layout.Ranges {
		if next[r.Name] != r.Size {
			t.Fatalf("tensor %q (%d values): %d listed", r.Name, r.Size, next[r.Name])
		}
	}
}

// names lists the String of each slice of p.
func names(p ShardRange) []string {
	var out []string
	for _, s := range p.Tensors {
		out = append(out, s.String())
	}
	return out
}

func TestPartitionSmallLayout(t *testing.T) {
	l := smallLayout() // 499 parameters in 8 tensors
	for _, k := range []int{1, 2, 7, 8, 9, 17, 100, l.Total - 1, l.Total} {
		parts, err := Partition(l, k)
		if err != nil {
			t.Fatalf("k=%d: %v", k, err)
		}
		checkPartition(t, l, parts, k)
	}
	parts, _ := Partition(l, 1)
	if want := madryNames; !slices.Equal(names(parts[0]), want) {
		t.Errorf("1 shard lists %v, want %v", names(parts[0]), want)
	}
	// Two shards: 250 and 249 parameters, fc1.weight (global [148,448))
	// cut at 250.
	parts, _ = Partition(l, 2)
	if parts[0].Hi != 250 ||
		!slices.Equal(names(parts[0]), []string{"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight[0:102]"}) ||
		!slices.Equal(names(parts[1]), []string{"fc1.weight[102:300]", "fc1.bias", "fc2.weight", "fc2.bias"}) {
		t.Errorf("2 shards: %+v", parts)
	}
	// As many shards as parameters: one each.
	parts, _ = Partition(l, l.Total)
	if p := parts[41]; p.Lo != 41 || p.Hi != 42 || !slices.Equal(names(p), []string{"conv1.bias[1:2]"}) {
		t.Errorf("shard 41 of %d: %+v", l.Total, p)
	}
}

// TestPartitionMadry17 is the design card's layout: madry-mnist's real
// tensors in 17 shards, 9 of 192,626 parameters and 8 of 192,625, fc1.weight
// spread over all of them.
func TestPartitionMadry17(t *testing.T) {
	l := madryLayout()
	if l.Total != 3274634 {
		t.Fatalf("madry-mnist has %d parameters, want 3274634", l.Total)
	}
	parts, err := Partition(l, 17)
	if err != nil {
		t.Fatal(err)
	}
	checkPartition(t, l, parts, 17)
	for k, p := range parts {
		want := 192625
		if k < 9 {
			want++
		}
		if p.Size() != want {
			t.Errorf("shard %d holds %d parameters, want %d", k, p.Size(), want)
		}
		if k > 0 && k < 16 && (len(p.Tensors) != 1 || p.Tensors[0].Name != "fc1.weight" || p.Tensors[0].Whole()) {
			t.Errorf("shard %d lists %v, want part of fc1.weight only", k, names(p))
		}
	}
	if got, want := names(parts[0]), []string{"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight[0:140530]"}; !slices.Equal(got, want) {
		t.Errorf("shard 0 lists %v, want %v", got, want)
	}
	if got, want := names(parts[16]), []string{"fc1.weight[3029913:3211264]", "fc1.bias", "fc2.weight", "fc2.bias"}; !slices.Equal(got, want) {
		t.Errorf("shard 16 lists %v, want %v", got, want)
	}
}

// TestPartitionVariedLayouts: every shard count on layouts of random sizes,
// empty tensors included.
func TestPartitionVariedLayouts(t *testing.T) {
	for seed := uint64(1); seed <= 30; seed++ {
		v := vec(2+int(seed%9), 1, seed)
		nm := make([]string, len(v))
		sizes := make([]int, len(v))
		for i, x := range v {
			nm[i] = fmt.Sprintf("t%d.weight", i)
			sizes[i] = int((x + 1) * 40) // 0 … 79
			if i%3 == 0 {
				sizes[i] = 0
			}
		}
		sizes[1]++ // at least one parameter
		l := layoutOf(nm, sizes)
		for k := 1; k <= l.Total; k++ {
			parts, err := Partition(l, k)
			if err != nil {
				t.Fatalf("sizes %v k=%d: %v", sizes, k, err)
			}
			checkPartition(t, l, parts, k)
		}
	}
}

func TestPartitionErrors(t *testing.T) {
	l := smallLayout()
	for _, k := range []int{0, -1, l.Total + 1} {
		if _, err := Partition(l, k); err == nil {
			t.Errorf("Partition(small, %d): no error", k)
		}
	}
	if _, err := Partition(l, 500); err == nil || !strings.Contains(err.Error(), "500 shards for 499 parameters") || !strings.Contains(err.Error(), "at most 499") {
		t.Errorf("500 shards for 499 parameters: %v", err)
	}
	gap := smallLayout()
	gap.Ranges[3].Offset++
	if _, err := Partition(gap, 2); err == nil {
		t.Error("layout with a gap: no error")
	}
	short := smallLayout()
	short.Total--
	if _, err := Partition(short, 2); err == nil {
		t.Error("layout whose total disagrees: no error")
	}
	if _, err := Partition(nn.Layout{}, 1); err == nil {
		t.Error("empty layout: no error")
	}
}

func TestDecayMaskAndConfigFor(t *testing.T) {
	l := smallLayout()
	d := train.DecayMask(l)
	want := []optim.Range{{Lo: 0, Hi: 40}, {Lo: 44, Hi: 140}, {Lo: 148, Hi: 448}, {Lo: 460, Hi: 496}}
	if !slices.Equal(d, want) {
		t.Errorf("DecayMask = %v, want %v", d, want)
	}
	parts, _ := Partition(l, 2)
	c0, c1 := ConfigFor(DefaultConfig(), parts[0], 7), ConfigFor(DefaultConfig(), parts[1], 7)
	if c0.BufLo != 0 || c0.BufHi != 7 || c1.BufLo != 0 || c1.BufHi != 0 || c1.Index != 1 || c1.Lo != parts[1].Lo || c1.Hi != parts[1].Hi {
		t.Errorf("ConfigFor: %+v %+v", c0, c1)
	}
	// The mask in global coordinates clipped to each shard: fc1.weight's
	// range [148,448) is cut at 250.
	if got, want := optim.ClipRanges(d, parts[0].Lo, parts[0].Hi), []optim.Range{{Lo: 0, Hi: 40}, {Lo: 44, Hi: 140}, {Lo: 148, Hi: 250}}; !slices.Equal(got, want) {
		t.Errorf("shard 0's decay mask %v, want %v", got, want)
	}
	if got, want := optim.ClipRanges(d, parts[1].Lo, parts[1].Hi), []optim.Range{{Lo: 0, Hi: 198}, {Lo: 210, Hi: 246}}; !slices.Equal(got, want) {
		t.Errorf("shard 1's decay mask %v, want %v", got, want)
	}
}
