package paramserver

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"unsafe"

	"github.com/logitpair/logitpair/pkg/optim"
)

// ShardConfig configures one parameter-server shard.
type ShardConfig struct {
	// Index is the shard's number, from 0.
	Index int
	// Lo, Hi: the shard owns [Lo, Hi) of the flat parameter vector.
	Lo, Hi int
	// BufLo, BufHi: the shard owns [BufLo, BufHi) of the flat buffer vector
	// (batch-norm running statistics; see BufferRange). Empty when equal.
	BufLo, BufHi int
	// InitBuffers is the shard's slice of the initial buffers, of length
	// BufHi − BufLo (nil when the shard owns no buffers).
	InitBuffers []float32
	// Workers is W: workers are numbered 0 … W−1 (backups included).
	Workers int
	// Optim selects and configures the optimizer (optim.New).
	Optim optim.Config
	// Schedule and LR are the learning-rate schedule spec and its base rate
	// (optim.ParseSchedule); step t is applied with Schedule.LR(t).
	Schedule string
	LR       float64
	// WeightDecay is TF-slim's l2_regularizer weight (0: off), applied over
	// Decay, the decayed ranges in global coordinates of the whole vector
	// (train.DecayMask(layout), the one rule of which elements decay); the shard clips them to [Lo, Hi).
	WeightDecay float64
	Decay       []optim.Range
	// EMA, when non-nil, keeps a moving average of the shard's parameters,
	// updated after every applied step t with num_updates = t.
	EMA *optim.EMAConfig
	// Step is the initial version: the first step the shard will apply (the
	// step of the checkpoint the initial parameters come from; 0 for a fresh
	// run).
	Step int64
}

// DefaultConfig returns a one-shard, one-worker configuration with the
// paper's optimizer: TensorFlow 1's RMSProp as the released ALP code sets it
// (ρ = 0.9, μ = 0.9, ε = 1, optim.DefaultRMSProp), lr 0.045 constant, no
// weight decay, no EMA and no buffers; set Lo, Hi and the rest for a real
// shard. In a cluster the coordinator's training configuration replaces
// all of it (its --optimizer, --lr, --lr-schedule, ...), so that a cluster
// and `logitpair train` given the same flags train the same model.
func DefaultConfig() ShardConfig {
	oc, _ := optim.DefaultConfig(optim.KindRMSProp)
	return ShardConfig{Workers: 1, Optim: oc, Schedule: "constant", LR: 0.045}
}

// Validate checks every field and the fields against each other.
func (c ShardConfig) Validate() error {
	switch {
	case c.Index < 0:
		return fmt.Errorf("paramserver: shard index must be >= 0, got %d", c.Index)
	case c.Lo < 0 || c.Hi < c.Lo:
		return fmt.Errorf("paramserver: shard %d: parameter range [%d,%d) must have 0 <= Lo <= Hi", c.Index, c.Lo, c.Hi)
	case c.BufLo < 0 || c.BufHi < c.BufLo:
		return fmt.Errorf("paramserver: shard %d: buffer range [%d,%d) must have 0 <= BufLo <= BufHi", c.Index, c.BufLo, c.BufHi)
	case len(c.InitBuffers) != c.BufHi-c.BufLo:
		return fmt.Errorf("paramserver: shard %d: InitBuffers has %d values for the buffer range [%d,%d) of %d", c.Index, len(c.InitBuffers), c.BufLo, c.BufHi, c.BufHi-c.BufLo)
	case c.Workers < 1:
		return fmt.Errorf("paramserver: shard %d: Workers must be >= 1, got %d", c.Index, c.Workers)
	case c.Step < 0:
		return fmt.Errorf("paramserver: shard %d: initial Step must be >= 0, got %d", c.Index, c.Step)
	case !(c.WeightDecay >= 0) || math.IsInf(c.WeightDecay, 1):
		return fmt.Errorf("paramserver: shard %d: WeightDecay must be finite and >= 0, got %v", c.Index, c.WeightDecay)
	}
	if err := c.Optim.Validate(); err != nil {
		return fmt.Errorf("paramserver: shard %d: %w", c.Index, err)
	}
	if _, err := optim.ParseSchedule(c.Schedule, c.LR); err != nil {
		return fmt.Errorf("paramserver: shard %d: %w", c.Index, err)
	}
	end := 0
	for _, r := range c.Decay {
		end = max(end, r.Hi)
	}
	if err := optim.ValidateRanges(c.Decay, end); err != nil {
		return fmt.Errorf("paramserver: shard %d: %w", c.Index, err)
	}
	if c.EMA != nil {
		if err := c.EMA.Validate(); err != nil {
			return fmt.Errorf("paramserver: shard %d: %w", c.Index, err)
		}
	}
	return nil
}

// Stats are a shard's counters since it was built (Restore does not reset
// them). Every Push call is counted once in Pushes and then in exactly one
// of Accepted, Duplicates, Rejected or Closed; every accepted gradient ends
// in Used, DroppedBackup or DroppedRestore, or is still pending.
type Stats struct {
	Version int64 // the shard's version: the next step it will apply

	Pushes     int64 // Push calls
	Accepted   int64 // gradients buffered
	Duplicates int64 // identical re-pushes acknowledged without change
	Rejected   Rejections
	Closed     int64 // calls refused because the shard was closed
	Pending    int64 // gradients buffered for the current version

	Applied        int64 // steps applied
	ApplyRepeats   int64 // Apply calls for already-applied steps, acknowledged
	Used           int64 // gradients averaged into applied steps
	DroppedBackup  int64 // buffered gradients of workers outside the applied set
	DroppedRestore int64 // buffered gradients discarded by Restore

	Pulls int64 // Pull calls answered with parameters
}

// Rejections counts refused pushes by reason; Stale counts the late
// gradients of workers that pushed after their step was applied.
type Rejections struct {
	Length, NonFinite, UnknownWorker, Stale, Future, Conflict int64
}

// Total returns the number of rejected pushes.
func (r Rejections) Total() int64 {
	return r.Length + r.NonFinite + r.UnknownWorker + r.Stale + r.Future + r.Conflict
}

// Dropped returns every gradient that did not make a step: rejected pushes
// (stale ones included), backups and those discarded by Restore.
func (s Stats) Dropped() int64 { return s.Rejected.Total() + s.DroppedBackup + s.DroppedRestore }

// ShardState is a shard's complete state at a step boundary, for the caller
// to persist (Checkpoint) and load back (Restore). Slices are copies owned
// by the value.
type ShardState struct {
	Index        int
	Lo, Hi       int
	BufLo, BufHi int
	// Version is the next step to apply.
	Version int64
	Params  []float32
	Buffers []float32
	// OptimKind is the optimizer's Name(); Optim its state slots.
	OptimKind string
	Optim     []optim.NamedState
	// EMA is the moving average (nil when the shard keeps none).
	EMA []float32
}

// pushed is one worker's buffered contribution to the current step.
type pushed struct {
	grad, bufs []float32
}

// Shard is one parameter-server shard: it owns [Lo, Hi) of the parameters,
// its optimizer state, [BufLo, BufHi) of the buffers, an optional EMA, and
// its version. All methods are safe for concurrent use.
type Shard struct {
	cfg   ShardConfig
	sched optim.Schedule
	decay []optim.Range // cfg.Decay clipped to [Lo, Hi), shard coordinates
	store Store

	mu        sync.Mutex
	opt       optim.Optimizer
	ema       *optim.EMA
	version   int64
	params    []float32
	bufs      []float32
	shared    bool // params and bufs are a Snapshot's: read-only (own)
	pending   map[int]pushed
	spare     [][]float32 // gradients' memory for GradientBuffer (release)
	lastStep  int64       // the last applied step, when lastSet != nil
	lastSet   []int
	lastScale float64       // the last applied step's scale (canonical: 0 for 1)
	changed   chan struct{} // closed and replaced whenever version changes
	closed    bool
	stats     Stats
	// Scratch for Apply.
	acc  []float64
	mean []float32
}

// NewShard builds shard cfg.Index with init, its slice [Lo, Hi) of the
// initial parameters, at version cfg.Step. When store is non-nil and holds a
// state for the shard (Store.Load), that state is restored instead: init and
// cfg.InitBuffers then only fix the lengths. store may be nil.
func NewShard(cfg ShardConfig, init []float32, store Store) (*Shard, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := cfg.Hi - cfg.Lo
	if len(init) != n {
		return nil, fmt.Errorf("paramserver: shard %d: init has %d values for the range [%d,%d) of %d", cfg.Index, len(init), cfg.Lo, cfg.Hi, n)
	}
	for i, x := range init {
		if x-x != 0 {
			return nil, fmt.Errorf("paramserver: shard %d: init holds %v at index %d", cfg.Index, x, i)
		}
	}
	sched, err := optim.ParseSchedule(cfg.Schedule, cfg.LR)
	if err != nil {
		return nil, err
	}
	opt, err := optim.New(cfg.Optim, n)
	if err != nil {
		return nil, fmt.Errorf("paramserver: shard %d: %w", cfg.Index, err)
	}
	cfg.Decay = slices.Clone(cfg.Decay)
	cfg.InitBuffers = slices.Clone(cfg.InitBuffers)
	if cfg.EMA != nil {
		e := *cfg.EMA
		cfg.EMA = &e
	}
	s := &Shard{
		cfg:     cfg,
		sched:   sched,
		decay:   optim.ClipRanges(cfg.Decay, cfg.Lo, cfg.Hi),
		store:   store,
		opt:     opt,
		version: cfg.Step,
		params:  slices.Clone(init),
		bufs:    slices.Clone(cfg.InitBuffers),
		pending: make(map[int]pushed),
		changed: make(chan struct{}),
		acc:     make([]float64, max(n, cfg.BufHi-cfg.BufLo)),
		mean:    make([]float32, n),
	}
	if s.params == nil {
		s.params = []float32{}
	}
	if cfg.EMA != nil {
		if s.ema, err = optim.NewEMA(*cfg.EMA, s.params); err != nil {
			return nil, err
		}
	}
	if store != nil {
		st, ok, err := store.Load(cfg.Index)
		if err != nil {
			return nil, fmt.Errorf("paramserver: shard %d: loading state: %w", cfg.Index, err)
		}
		if ok {
			if err := s.Restore(st); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

// Config returns the shard's configuration.
func (s *Shard) Config() ShardConfig {
	c := s.cfg
	c.Decay = slices.Clone(c.Decay)
	c.InitBuffers = slices.Clone(c.InitBuffers)
	return c
}

// Version returns the next step the shard will apply.
func (s *Shard) Version() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version
}

func (s *Shard) errorf(op string, kind error, step int64, worker int, format string, a ...any) *Error {
	return &Error{Op: op, Kind: kind, Shard: s.cfg.Index, Step: step, Version: s.version, Worker: worker, Detail: fmt.Sprintf(format, a...)}
}

// Pull returns copies of the shard's parameters and buffers at version
// step. When the shard is still below step it waits until an Apply brings it
// there, or until ctx is done (returning ctx.Err()); a ctx that is already
// done gives ctx.Err() at once. A step below the version gives an *Error of
// kind ErrStale whose Version tells the caller where the shard is.
func (s *Shard) Pull(ctx context.Context, step int64) (params, buffers []float32, err error) {
	err = s.at(ctx, step, func() { params, buffers = slices.Clone(s.params), slices.Clone(s.bufs) })
	return params, buffers, err
}

// Snapshot is Pull without the copies: it returns the shard's own vectors
// of version step, shared by every Snapshot of that version and never
// changed again (the shard makes its next version in new memory), so the
// caller must treat them as read-only. A server streaming the vectors to
// many workers reads them in place; an in-process caller that wants to
// change them uses Pull.
func (s *Shard) Snapshot(ctx context.Context, step int64) (params, buffers []float32, err error) {
	err = s.at(ctx, step, func() {
		s.shared = true
		params, buffers = s.params, s.bufs
	})
	return params, buffers, err
}

// at waits until the shard is at version step and calls read with mu held
// there: Pull's and Snapshot's rule of waiting (see Pull), counted in
// Stats.Pulls.
func (s *Shard) at(ctx context.Context, step int64, read func()) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return s.errorf("pull", ErrClosed, step, -1, "")
		}
		if step < s.version {
			e := s.errorf("pull", ErrStale, step, -1, "")
			s.mu.Unlock()
			return e
		}
		if step == s.version {
			read()
			s.stats.Pulls++
			s.mu.Unlock()
			return nil
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// own makes params and bufs the shard's to change: after a Snapshot handed
// them out it continues on copies and leaves the snapshot's as they are.
// Call with mu held, before changing either.
func (s *Shard) own() {
	if s.shared {
		s.params, s.bufs, s.shared = slices.Clone(s.params), slices.Clone(s.bufs), false
	}
}

// Push buffers worker's gradient slice grad (length Hi − Lo) and buffer
// slice buffers (length BufHi − BufLo) for step; both are copied. It returns
// an *Error, changes nothing but the rejection counter, when the worker is
// outside [0, Workers) (ErrUnknownWorker), step is not the shard's version
// (ErrStale, ErrFuture), a length is wrong (ErrLength), a value is NaN or
// ±Inf (ErrNonFinite), or the worker already pushed different content for
// this step (ErrConflict; the first push stays). Pushing the same content
// again is acknowledged (nil) and counted as a duplicate.
func (s *Shard) Push(step int64, worker int, grad, buffers []float32) error {
	return s.push(step, worker, grad, buffers, false)
}

// PushOwned is Push without the copies, for a caller that assembled grad
// and buffers for the shard alone (a server receiving a push, ideally into
// a GradientBuffer): when the push is accepted the shard keeps them, and
// the caller must not touch them again; when it is refused or a duplicate,
// they stay the caller's.
func (s *Shard) PushOwned(step int64, worker int, grad, buffers []float32) error {
	return s.push(step, worker, grad, buffers, true)
}

// GradientBuffer returns an empty slice with room for a gradient (Hi − Lo
// values), to receive a push into and hand over with PushOwned: the memory
// of a gradient an earlier Apply or Restore has finished with when there is
// one (its old values are still there, beyond the length), new otherwise.
func (s *Shard) GradientBuffer() []float32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k := len(s.spare); k > 0 {
		g := s.spare[k-1]
		s.spare[k-1] = nil
		s.spare = s.spare[:k-1]
		return g
	}
	return make([]float32, 0, len(s.params))
}

// release empties pending, keeping up to Workers of its gradients' memory
// for GradientBuffer. Call with mu held.
func (s *Shard) release() {
	for _, p := range s.pending {
		if len(s.spare) < s.cfg.Workers {
			s.spare = append(s.spare, p.grad[:0])
		}
	}
	clear(s.pending)
}

func (s *Shard) push(step int64, worker int, grad, buffers []float32, owned bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Pushes++
	if s.closed {
		s.stats.Closed++
		return s.errorf("push", ErrClosed, step, worker, "")
	}
	rej := &s.stats.Rejected
	switch {
	case worker < 0 || worker >= s.cfg.Workers:
		rej.UnknownWorker++
		return s.errorf("push", ErrUnknownWorker, step, worker, "workers are 0..%d", s.cfg.Workers-1)
	case step < s.version:
		rej.Stale++
		return s.errorf("push", ErrStale, step, worker, "")
	case step > s.version:
		rej.Future++
		return s.errorf("push", ErrFuture, step, worker, "")
	case len(grad) != len(s.params):
		rej.Length++
		return s.errorf("push", ErrLength, step, worker, "gradient has %d values, shard range [%d,%d) has %d", len(grad), s.cfg.Lo, s.cfg.Hi, len(s.params))
	case len(buffers) != len(s.bufs):
		rej.Length++
		return s.errorf("push", ErrLength, step, worker, "buffers have %d values, shard buffer range [%d,%d) has %d", len(buffers), s.cfg.BufLo, s.cfg.BufHi, len(s.bufs))
	}
	if i := nonFinite(grad); i >= 0 {
		rej.NonFinite++
		return s.errorf("push", ErrNonFinite, step, worker, "gradient[%d] = %v", i, grad[i])
	}
	if i := nonFinite(buffers); i >= 0 {
		rej.NonFinite++
		return s.errorf("push", ErrNonFinite, step, worker, "buffers[%d] = %v", i, buffers[i])
	}
	if p, ok := s.pending[worker]; ok {
		if sameBits(p.grad, grad) && sameBits(p.bufs, buffers) {
			s.stats.Duplicates++
			return nil
		}
		rej.Conflict++
		return s.errorf("push", ErrConflict, step, worker, "the worker already pushed different values for this step")
	}
	if !owned {
		grad, buffers = slices.Clone(grad), slices.Clone(buffers)
	}
	s.pending[worker] = pushed{grad: grad, bufs: buffers}
	s.stats.Accepted++
	return nil
}

// Apply applies step with the gradients of exactly the workers in set
// (sorted, no repeats, non-empty, every one of them pushed for step):
//
//	g     = float32( (Σ_{w∈set, in set order} float64(g_w)) / N )   per element
//	g    += wd·θ  over the decayed ranges                           (optim.AddWeightDecay)
//	θ     = optimizer step with lr = Schedule.LR(step) at step (× the scale: ApplyScaled)
//	bufs  = float32( (Σ_{w∈set} float64(b_w)) / N )                 per element
//	ema   ← update(θ, num_updates = step)
//	version = step + 1
//
// The buffered gradients of workers outside the set are freed and counted
// in Stats.DroppedBackup. Apply for a step below the version is
// acknowledged and does nothing (a coordinator's resend) — except that a
// resend of the last applied step naming another set is refused with
// ErrSetMismatch. It is an error, and nothing changes, when step is above
// the version (ErrFuture), the set is malformed (ErrBadSet,
// ErrUnknownWorker) or a worker of the set has not pushed (ErrMissing,
// with Error.Workers naming them).
func (s *Shard) Apply(step int64, set []int) error { return s.ApplyScaled(step, set, 0) }

// ApplyScaled is Apply with the step's learning rate Schedule.LR(step)
// multiplied by lrScale, as the commit log's entry says (Entry.LRScale: 0
// stands for 1; otherwise positive and finite, or an *Error of kind
// ErrBadScale). A resend of the last applied step is refused with
// ErrSetMismatch when its scale differs from the applied one, as when its
// set does.
func (s *Shard) ApplyScaled(step int64, set []int, lrScale float64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return s.errorf("apply", ErrClosed, step, -1, "")
	}
	if err := checkScale(lrScale); err != nil {
		return s.errorf("apply", ErrBadScale, step, -1, "%v", err)
	}
	lrScale = canonicalScale(lrScale)
	if step < s.version {
		if s.lastSet != nil && step == s.lastStep && !slices.Equal(set, s.lastSet) {
			return s.errorf("apply", ErrSetMismatch, step, -1, "resent with workers %v, applied with %v", set, s.lastSet)
		}
		if s.lastSet != nil && step == s.lastStep && lrScale != s.lastScale {
			return s.errorf("apply", ErrSetMismatch, step, -1, "resent with learning-rate scale %v, applied with %v", LRScaleOf(lrScale), LRScaleOf(s.lastScale))
		}
		s.stats.ApplyRepeats++
		return nil
	}
	if step > s.version {
		return s.errorf("apply", ErrFuture, step, -1, "")
	}
	if len(set) == 0 {
		return s.errorf("apply", ErrBadSet, step, -1, "empty set")
	}
	for i, w := range set {
		if w < 0 || w >= s.cfg.Workers {
			return s.errorf("apply", ErrUnknownWorker, step, -1, "worker %d in set %v; workers are 0..%d", w, set, s.cfg.Workers-1)
		}
		if i > 0 && w <= set[i-1] {
			return s.errorf("apply", ErrBadSet, step, -1, "set %v is not strictly increasing", set)
		}
	}
	var missing []int
	for _, w := range set {
		if _, ok := s.pending[w]; !ok {
			missing = append(missing, w)
		}
	}
	if len(missing) > 0 {
		e := s.errorf("apply", ErrMissing, step, -1, "")
		e.Workers = missing
		return e
	}

	s.own()
	mean := s.mean
	s.average(mean, set, func(p pushed) []float32 { return p.grad })
	if err := (optim.WeightDecay{WD: s.cfg.WeightDecay, Mask: s.decay}).Apply(mean, s.params); err != nil {
		return s.errorf("apply", err, step, -1, "weight decay")
	}
	// Step validates before it modifies anything: on an error (e.g. weight
	// decay overflowing to Inf) the shard is unchanged.
	lr := s.sched.LR(step)
	if lrScale != 0 {
		lr *= lrScale
	}
	if err := s.opt.Step(s.params, mean, lr, step); err != nil {
		return &Error{Op: "apply", Kind: err, Shard: s.cfg.Index, Step: step, Version: s.version, Worker: -1}
	}
	if len(s.bufs) > 0 {
		s.average(s.bufs, set, func(p pushed) []float32 { return p.bufs })
	}
	if s.ema != nil {
		if err := s.ema.Update(s.params, step); err != nil { // lengths are fixed: cannot happen
			panic(fmt.Sprintf("paramserver: shard %d: EMA update: %v", s.cfg.Index, err))
		}
	}
	s.stats.Applied++
	s.stats.Used += int64(len(set))
	s.stats.DroppedBackup += int64(len(s.pending) - len(set))
	s.release()
	s.lastStep, s.lastSet, s.lastScale = step, slices.Clone(set), lrScale
	s.setVersion(step + 1)
	return nil
}

// average writes into dst the per-element mean of part(pending[w]) over the
// workers of set: summed in float64 in the order of set, divided by len(set),
// rounded to float32 once. The result depends on the set and the values
// only, never on the order the pushes arrived in.
func (s *Shard) average(dst []float32, set []int, part func(pushed) []float32) {
	acc := s.acc[:len(dst)]
	clear(acc)
	for _, w := range set {
		src := part(s.pending[w])
		for i, x := range src[:len(acc)] {
			acc[i] += float64(x)
		}
	}
	n := float64(len(set))
	for i, a := range acc {
		dst[i] = float32(a / n)
	}
}

// setVersion moves the version and wakes every waiting Pull. Call with mu
// held.
func (s *Shard) setVersion(v int64) {
	s.version = v
	close(s.changed)
	s.changed = make(chan struct{})
}

// Stats returns a snapshot of the counters.
func (s *Shard) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Version = s.version
	st.Pending = int64(len(s.pending))
	return st
}

// Checkpoint returns a copy of the shard's state at its current version.
// Buffered gradients of the current step are not part of it: a restored
// shard waits for them to be pushed again.
func (s *Shard) Checkpoint() ShardState {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := ShardState{
		Index: s.cfg.Index, Lo: s.cfg.Lo, Hi: s.cfg.Hi, BufLo: s.cfg.BufLo, BufHi: s.cfg.BufHi,
		Version:   s.version,
		Params:    slices.Clone(s.params),
		Buffers:   slices.Clone(s.bufs),
		OptimKind: s.opt.Name(),
	}
	for _, ns := range s.opt.State() {
		st.Optim = append(st.Optim, optim.NamedState{Name: ns.Name, Data: slices.Clone(ns.Data)})
	}
	if s.ema != nil {
		st.EMA = slices.Clone(s.ema.Values())
	}
	return st
}

// Restore replaces the shard's state by st (copied) and wakes waiting Pulls;
// the gradients buffered for the current step are discarded (counted in
// Stats.DroppedRestore), as the cluster rolls back to st.Version. It returns
// an *Error of kind ErrRestore, and changes nothing, when st is for another
// shard or range, a length is wrong, st has another optimizer kind or other
// slots, a value is not finite, or st has an EMA and the shard keeps none
// (or the reverse).
func (s *Shard) Restore(st ShardState) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return s.errorf("restore", ErrClosed, st.Version, -1, "")
	}
	bad := func(format string, a ...any) error {
		return s.errorf("restore", ErrRestore, st.Version, -1, format, a...)
	}
	c := s.cfg
	switch {
	case st.Index != c.Index:
		return bad("state of shard %d given to shard %d", st.Index, c.Index)
	case st.Lo != c.Lo || st.Hi != c.Hi || st.BufLo != c.BufLo || st.BufHi != c.BufHi:
		// A shard's state cannot be re-cut: it holds its optimizer slots
		// for its own range only.
		return bad("the state holds parameters [%d,%d) and buffers [%d,%d), the shard [%d,%d) and [%d,%d): "+
			"it was saved under another partition of the parameters (another number of shards, or a release "+
			"that cut shards only at tensor boundaries); start the shards on empty directories, or continue "+
			"the run in one process from the coordinator's checkpoint (logitpair train --resume)",
			st.Lo, st.Hi, st.BufLo, st.BufHi, c.Lo, c.Hi, c.BufLo, c.BufHi)
	case st.Version < 0:
		return bad("negative version")
	case len(st.Params) != len(s.params):
		return bad("%d parameters, want %d", len(st.Params), len(s.params))
	case len(st.Buffers) != len(s.bufs):
		return bad("%d buffer values, want %d", len(st.Buffers), len(s.bufs))
	case st.OptimKind != s.opt.Name():
		return bad("optimizer %q, shard runs %q", st.OptimKind, s.opt.Name())
	case s.ema == nil && st.EMA != nil:
		return bad("state has an EMA, the shard keeps none")
	case s.ema != nil && len(st.EMA) != len(s.params):
		return bad("EMA of %d values, want %d", len(st.EMA), len(s.params))
	}
	for _, v := range [][]float32{st.Params, st.Buffers, st.EMA} {
		if i := nonFinite(v); i >= 0 {
			return bad("non-finite value %v", v[i])
		}
	}
	// SetState validates every slot before copying any: on an error nothing
	// has changed. Nothing after it can fail.
	if err := s.opt.SetState(st.Optim); err != nil {
		return bad("%v", err)
	}
	if s.ema != nil {
		if err := s.ema.SetState([]optim.NamedState{{Name: "ema", Data: st.EMA}}); err != nil {
			panic(fmt.Sprintf("paramserver: shard %d: EMA SetState after checking its length: %v", c.Index, err))
		}
	}
	s.own()
	copy(s.params, st.Params)
	copy(s.bufs, st.Buffers)
	s.stats.DroppedRestore += int64(len(s.pending))
	s.release()
	s.lastSet = nil
	s.setVersion(st.Version)
	return nil
}

// Save writes Checkpoint() to the shard's Store.
func (s *Shard) Save() error {
	if s.store == nil {
		return fmt.Errorf("paramserver: shard %d: no store", s.cfg.Index)
	}
	return s.store.Save(s.Checkpoint())
}

// Close refuses every later Push, Pull, Apply and Restore with ErrClosed
// and wakes waiting Pulls, which return ErrClosed. Checkpoint and Stats
// still work. Close is idempotent.
func (s *Shard) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.changed)
		s.changed = make(chan struct{})
	}
	return nil
}

// nonFinite returns the index of the first NaN or ±Inf in v, or −1. It
// runs over every pushed gradient, so it tests eight values at a time on
// their bits, two to a uint64: a float32 is NaN or ±Inf when its exponent
// field is all ones, and then adding one at the exponent's lowest bit
// carries into the sign bit, never beyond it. The first block that carries
// is searched value by value.
func nonFinite(v []float32) int {
	const (
		exponents = 0x7f800000_7f800000
		lowest    = 0x00800000_00800000
		signs     = 0x80000000_80000000
	)
	i := 0
	for i < len(v) && uintptr(unsafe.Pointer(&v[i]))%8 != 0 {
		i++ // to 8-byte alignment; the value by value search covers it
	}
	if j := firstNonFinite(v[:i]); j >= 0 {
		return j
	}
	for ; i+8 <= len(v); i += 8 {
		w := (*[4]uint64)(unsafe.Pointer(&v[i]))
		if ((w[0]&exponents+lowest)|(w[1]&exponents+lowest)|(w[2]&exponents+lowest)|(w[3]&exponents+lowest))&signs != 0 {
			break
		}
	}
	if j := firstNonFinite(v[i:]); j >= 0 {
		return i + j
	}
	return -1
}

// firstNonFinite is nonFinite value by value.
func firstNonFinite(v []float32) int {
	for i, x := range v {
		if x-x != 0 {
			return i
		}
	}
	return -1
}

// sameBits reports whether a and b hold the same float32 bit patterns.
func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}
