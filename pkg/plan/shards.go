package plan

import (
	"fmt"
	"time"
)

// ShardsResult is FewestShards' answer.
type ShardsResult struct {
	// Target is the efficiency asked for.
	Target float64 `json:"target_efficiency"`
	// Reached tells whether some shard count reaches Target; Shards is
	// the fewest that does, and Prediction its prediction.
	Reached    bool       `json:"reached"`
	Shards     int        `json:"shards,omitempty"`
	Prediction Prediction `json:"prediction"`
	// When not Reached, Prediction is at MaxShards (the most the model
	// allows: one parameter each), the best any shard count gives, and
	// Reason says what holds the efficiency below Target there.
	MaxShards int    `json:"max_shards"`
	Reason    string `json:"reason,omitempty"`
}

// FewestShards returns the fewest shards P (c.Shards is ignored) whose
// predicted efficiency is at least target, in (0, 1).
//
// Every term of the step is non-increasing in P (the shard links' share
// W·D/P, the apply's S/P, the overlapped push's slices), so the efficiency
// is non-decreasing and a binary search over P = 1 … S finds the fewest. As
// P grows the step approaches the parts no shard count removes: compute,
// the worker's own link (D_pull/L_w + D_push/L_w, less the backward window
// with overlap), the loopback on a single host, and the coordination; when
// even P = S falls short of target the answer says so and names the largest
// of them.
func FewestShards(c Cluster, target float64) (ShardsResult, error) {
	if !(target > 0 && target < 1) {
		return ShardsResult{}, fmt.Errorf("plan: target efficiency %v: must be in (0, 1) (e.g. 0.9)", target)
	}
	at := func(p int) (Prediction, error) {
		c.Shards = p
		return Predict(c)
	}
	if c.Params < 1 {
		_, err := at(1) // the error names the missing size
		return ShardsResult{}, err
	}
	hiP := c.Params
	if hiP > 1<<31 {
		hiP = 1 << 31
	}
	hi := int(hiP)
	best, err := at(hi)
	if err != nil {
		return ShardsResult{}, err
	}
	r := ShardsResult{Target: target, MaxShards: hi}
	if best.Efficiency < target {
		r.Prediction = best
		r.Reason = fmt.Sprintf("no shard count reaches %.3f: as shards are added the efficiency approaches %.3f (%d shards, one parameter each); the step stays above %v, of which %v is compute, and the largest other part is %s, %v",
			target, best.Efficiency, hi, round(best.Step.D()), round(best.Compute.D()), best.Limit(), round(largestOther(best)))
		return r, nil
	}
	lo := 1 // invariant: efficiency(hi) ≥ target; every P < lo falls short
	for lo < hi {
		mid := lo + (hi-lo)/2
		p, err := at(mid)
		if err != nil {
			return ShardsResult{}, err
		}
		if p.Efficiency >= target {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	if r.Prediction, err = at(hi); err != nil {
		return ShardsResult{}, err
	}
	r.Reached, r.Shards = true, hi
	return r, nil
}

// largestOther returns the duration of the part Limit names.
func largestOther(p Prediction) time.Duration {
	return max(p.Pull, p.Push, p.Apply, p.Coord).D()
}

// round rounds d to 0.1 ms for messages.
func round(d time.Duration) time.Duration { return d.Round(100 * time.Microsecond) }
