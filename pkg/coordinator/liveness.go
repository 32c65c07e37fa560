package coordinator

import (
	"slices"
	"time"

	"go.uber.org/zap"
)

// The liveness rule. A worker is dropped from a step only by the step's own
// rule (the first N reports make it; the rest are backups). Whether a worker
// counts as live — which decides the pause and, with Elastic, N, and is the
// live count of Status, the metrics and the status page — is one rule: a
// slot is live once a worker joined it (SetLive(slot, true), or a report
// from it: pkg/rpc accepts reports only from held slots) and until it is
// counted gone. No slot is live before its worker joins: a coordinator with
// no workers says 0 live and pauses, saying that none has joined yet.
//
// Counting a worker as gone follows two witnesses that must agree:
//
//   - gossip (memberlist) says it is dead (Gossip(slot, false)), and
//   - it missed Config.MissedSteps steps: steps committed since its last
//     report, plus, while the current step cannot be decided without the
//     suspects (the reports and the unsuspected workers still computing are
//     fewer than N), the number of step times (the recent mean, at least
//     MinStepTime) that passed since the step opened or since it was last
//     heard from.
//
// On a loaded machine gossip probes time out while the worker's pushes and
// reports still arrive; its reports keep its missed count at zero, so it is
// never dropped. A worker that really died misses steps — committed without
// it when backups cover it, or waited for when they do not — and is dropped
// after MissedSteps of them. A clean Leave (SetLive(slot, false)) drops it
// at once. A report or a join restores it; gossip seeing it alive again
// only clears the suspicion: a dropped worker's slot was released, so it
// must join again before it counts (its reports are refused until then).

// slotState is one worker slot's liveness.
type slotState struct {
	live    bool      // counts as live (for the pause and Elastic's N)
	joined  bool      // a worker joined it at least once (this process)
	suspect bool      // gossip says dead
	from    int64     // misses count from this step (its last report + 1)
	since   time.Time // when it was last heard from (a report) or came alive
}

func (c *Coordinator) liveLocked() int {
	n := 0
	for _, s := range c.slots {
		if s.live {
			n++
		}
	}
	return n
}

// joinedLocked reports whether any worker has joined since the coordinator
// started.
func (c *Coordinator) joinedLocked() bool {
	for _, s := range c.slots {
		if s.joined {
			return true
		}
	}
	return false
}

// heardLocked records a report of step from slot: the worker is alive.
func (c *Coordinator) heardLocked(slot int, step int64) {
	s := &c.slots[slot]
	s.from = max(s.from, step+1)
	s.since = c.cfg.Now()
	if !s.live {
		c.setLiveLocked(slot, true, "it reported a step")
	}
}

// missedLocked is how many steps slot missed (see the rule above).
func (c *Coordinator) missedLocked(slot int) int64 {
	s := c.slots[slot]
	if s.from > c.step {
		return 0 // it reported the current step
	}
	missed := c.step - s.from
	if !c.blockedLocked() {
		return missed
	}
	per := max(c.stepTime, c.cfg.MinStepTime)
	start := c.opened
	if s.since.After(start) {
		start = s.since
	}
	if waited := c.cfg.Now().Sub(start); waited > 0 && per > 0 {
		missed += int64(waited / per)
	}
	return missed
}

// blockedLocked reports whether the current step waits on suspects: the
// reports so far and the live workers gossip does not suspect that have not
// reported yet cannot make N. Only then does waiting time count as missed
// steps; otherwise the healthy workers will decide the step anyway.
func (c *Coordinator) blockedLocked() bool {
	pending := 0
	for w, s := range c.slots {
		if s.live && !s.suspect && s.from <= c.step && !slices.Contains(c.reports, w) {
			pending++
		}
	}
	return len(c.reports)+pending < c.requiredLocked()
}

// AdoptJoined makes live every worker slot that held reports as held: the
// workers that joined before the coordinator was built, whose joins could
// not reach it (see Late.Bind). held is called under the coordinator's
// lock, so a Leave that releases a slot and then calls SetLive(slot, false)
// is ordered after it either way.
func (c *Coordinator) AdoptJoined(held func(slot int) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for w := range c.slots {
		if s := &c.slots[w]; !s.live && held(w) {
			s.suspect = false
			s.from, s.since = max(s.from, c.step), c.cfg.Now()
			c.setLiveLocked(w, true, "it joined before the coordinator started")
		}
	}
}

// SetLive records a worker slot's liveness as certain: false when it left
// cleanly (Leave), true when it joined. Fewer live workers than N pauses the
// cluster with a reason; with Elastic, N follows.
func (c *Coordinator) SetLive(slot int, alive bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if slot < 0 || slot >= c.cfg.Workers {
		return
	}
	s := &c.slots[slot]
	s.suspect = false
	if alive {
		s.from, s.since = max(s.from, c.step), c.cfg.Now()
	}
	if s.live != alive {
		reason := "it left"
		if alive {
			reason = "it joined"
		}
		c.setLiveLocked(slot, alive, reason)
	}
}

// Gossip records what membership says of a worker slot. Alive clears the
// suspicion (it does not make a slot live: only a join or a report does);
// dead only makes it a suspect, dropped once it has also missed
// Config.MissedSteps steps (checked now, after every commit and at every
// probe).
func (c *Coordinator) Gossip(slot int, alive bool) {
	c.mu.Lock()
	if slot < 0 || slot >= c.cfg.Workers {
		c.mu.Unlock()
		return
	}
	s := &c.slots[slot]
	if alive {
		if s.suspect && s.live {
			c.logger.Info("gossip sees a suspected worker alive again", zap.Int("slot", slot))
		}
		s.suspect = false
		c.mu.Unlock()
		return
	}
	if !s.suspect {
		s.suspect = true
		if !s.live {
			c.mu.Unlock()
			return // it left already
		}
		c.logger.Info("gossip suspects a worker; it is dropped only if it also misses steps",
			zap.Int("slot", slot), zap.Int64("missed", c.missedLocked(slot)), zap.Int("missed_steps_to_drop", c.cfg.MissedSteps))
	}
	c.mu.Unlock()
	c.checkLiveness()
}

// checkLiveness drops the suspects that missed enough steps and releases
// their slots.
func (c *Coordinator) checkLiveness() {
	c.mu.Lock()
	var gone []int
	for w := range c.slots {
		s := c.slots[w]
		if s.live && s.suspect {
			if m := c.missedLocked(w); m >= int64(c.cfg.MissedSteps) {
				c.setLiveLocked(w, false, "gossip declared it dead and it missed steps")
				gone = append(gone, w)
			}
		}
	}
	c.mu.Unlock()
	if c.hooks.Release != nil {
		for _, w := range gone {
			c.hooks.Release(w)
		}
	}
}

// setLiveLocked changes slot's liveness, logs why, and updates the pause
// (and, with Elastic, N).
func (c *Coordinator) setLiveLocked(slot int, alive bool, why string) {
	c.slots[slot].live = alive
	if alive {
		c.slots[slot].joined = true
		if c.liveLocked() >= c.cfg.Workers-c.cfg.Backups {
			c.filled = true
		}
	}
	c.logger.Info("worker liveness", zap.Int("slot", slot), zap.Bool("alive", alive), zap.String("why", why),
		zap.Int("live", c.liveLocked()), zap.Int("required", c.requiredLocked()))
	c.updatePauseLocked()
	if len(c.reports) >= c.requiredLocked() {
		c.kickLocked()
	}
	c.notifyLocked()
}
