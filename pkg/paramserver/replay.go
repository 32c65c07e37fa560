package paramserver

import "fmt"

// Replay re-applies a commit log to shards: for each entry, in order, and
// each shard not already past its step, it pushes the shard's slices of
// every listed worker's gradient and buffers (grads returns the full flat
// gradient and the full flat buffer vector of worker at step) and then
// applies the step with exactly the entry's workers and learning-rate
// scale (ApplyScaled). Shards already past an entry's step skip it (as
// Apply would); a shard behind the first entry it needs, or an entry that
// skips a step, is an error, since the log cannot bring it to the entry's
// version.
//
// grads is called once per (step, worker), only for steps some shard still
// needs. Replaying a log onto shards restored from the same state as the
// original run reproduces the original parameters bit for bit as long as
// grads returns the same values as the original workers did (true when each
// worker's step is a function of the seed, the step and its slot; see
// docs/architecture.md, "One synchronous cluster step").
func Replay(log []Entry, shards []*Shard, grads func(step int64, worker int) (grad, buffers []float32)) error {
	for _, e := range log {
		var need []*Shard
		for _, s := range shards {
			switch v := s.Version(); {
			case v > e.Step:
			case v == e.Step:
				need = append(need, s)
			default:
				return fmt.Errorf("paramserver: Replay: shard %d is at version %d, the log's next entry is step %d", s.cfg.Index, v, e.Step)
			}
		}
		if len(need) == 0 {
			continue
		}
		for _, w := range e.Workers {
			g, b := grads(e.Step, w)
			for _, s := range need {
				c := s.cfg
				if c.Hi > len(g) || c.BufHi > len(b) {
					return fmt.Errorf("paramserver: Replay: step %d worker %d: gradient of %d and buffers of %d do not cover shard %d ([%d,%d), buffers [%d,%d))",
						e.Step, w, len(g), len(b), c.Index, c.Lo, c.Hi, c.BufLo, c.BufHi)
				}
				if err := s.Push(e.Step, w, g[c.Lo:c.Hi], b[c.BufLo:c.BufHi]); err != nil {
					return fmt.Errorf("paramserver: Replay: %w", err)
				}
			}
		}
		for _, s := range need {
			if err := s.ApplyScaled(e.Step, e.Workers, e.LRScale); err != nil {
				return fmt.Errorf("paramserver: Replay: %w", err)
			}
		}
	}
	return nil
}
