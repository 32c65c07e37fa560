package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Overlap: what runs beside what, and why each shard still applies the mean
// of one logged set of gradients computed from one state of the parameters.
//
//   - Pushes start during the backward pass (pushRound): the Computer calls
//     ready(lo) as the gradient becomes final from the output layer down,
//     and a shard's push starts once ready covers its whole range, so the
//     shards holding the top layers are pushed first, while the layers
//     below are still being differentiated. A push sends only final
//     values (Computer's contract), so what each shard receives is what a
//     push after the whole backward pass would send.
//   - Step t+1 is pulled ahead (prefetch): right after its pushes for step
//     t the worker asks every shard for version t+1 (each Pull waits until
//     that shard has applied step t) and, beside the pulls, the coordinator
//     for the step after t; the report of step t goes out meanwhile. When
//     every slice has arrived, the worker computes step t+1 at once,
//     without waiting for the coordinator's word.
//   - The coordinator's word comes before the pushes instead (confirmation):
//     every gradient's pushes wait for an answer to WaitStep(t−1, gen)
//     requested after every slice the gradient was computed from had been
//     pulled, and go out only if it says the cluster is at exactly step t of
//     generation gen. The request is sent before the computation starts,
//     so its round trip is hidden behind the forward pass.
//
// Why the confirmation suffices (the rollback argument). Shards know no
// generations: Pull(t) returns whatever the shard holds when its version is
// t. Version t of a shard is the replay of the commit log's entries below
// t — Apply only applies logged sets, and a rollback restores only states
// consistent with the log (the coordinator's invariant) — and within one
// generation the log only grows: the coordinator truncates it only in a
// rollback, which bumps the generation before any further step is logged or
// applied, and generations never decrease. Each slice was pulled after the
// worker had learnt of generation gen (so after gen began) and before the
// confirmation was requested; the confirmation saw gen still current, so no
// rollback completed in between, and a rollback still under way then
// restores only states equal to what the log already said. Hence every
// slice is the one state of version t that generation gen defines: no slice
// of another generation is ever combined with them, whether it was
// prefetched or pulled after the coordinator named the step. A rollback
// after the confirmation leaves a push for step t either refused (the shard
// is at another version: retry, resync) or taken by a shard restored to
// version t, whose state, by the same argument, equals the one the
// gradient was computed from. So every shard still averages, for each
// logged (t, S_t), gradients computed from the state the log defines at t —
// what a replay recomputes, bit for bit. (One gap is the protocol's, not
// the overlap's, and was there before it: Push and Report carry no
// generation, so a push delayed past a rollback and past the replay of
// every step up to t — possible only with backups, which decide those
// steps without this worker — would reach version t of the new
// generation. Pushing during the backward pass narrows that window.)
//
// A confirmation that says anything else (another generation, a later
// step: the step was decided without this worker, the run is done) drops
// the gradient and every pulled slice, and the loop goes on from that
// answer as after a WaitStep.

// confirmation is a WaitStep(t−1, gen) in flight, requested once every
// slice of version (t, gen) was pulled.
type confirmation struct {
	cancel context.CancelFunc
	done   chan struct{}
	st     StepState
	err    error
}

// confirm asks the coordinator, on another goroutine, for the state after
// step t−1 of generation gen; it answers at once unless the cluster is
// still at (t−1, gen), i.e. has applied step t−1 on the shards but not yet
// moved on (a prefetched step).
func (w *Worker) confirm(ctx context.Context, t, gen int64) *confirmation {
	cctx, cancel := context.WithTimeout(ctx, w.cfg.PullTimeout)
	c := &confirmation{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		c.st, c.err = w.coord.WaitStep(cctx, t-1, gen)
	}()
	return c
}

// result waits for the answer.
func (c *confirmation) result() (StepState, error) {
	<-c.done
	return c.st, c.err
}

// stop cancels the request if it is still in flight and waits for its
// goroutine.
func (c *confirmation) stop() {
	c.cancel()
	<-c.done
}

// pushRound pushes one version's gradient, shard by shard, as the
// computation hands it out (ready). Its methods run on the computing
// goroutine; the pushes on their own.
type pushRound struct {
	w   *Worker
	ctx context.Context
	cur version
	// conf, when not nil, is waited for before the first push; decided
	// says it was, confirmed what it said (cst, cerr: its answer).
	conf      *confirmation
	decided   bool
	confirmed bool
	cst       StepState
	cerr      error
	next      int // w.order[next:] are the shards not started yet
	wg        sync.WaitGroup
	errs      []error
}

// pushes starts a round for version cur; conf nil means the gradient was
// confirmed already (a retry of its pushes).
func (w *Worker) pushes(ctx context.Context, cur version, conf *confirmation) *pushRound {
	return &pushRound{w: w, ctx: ctx, cur: cur, conf: conf, errs: make([]error, len(w.shards))}
}

// ready is the Computer's ready: grad[lo:] and the buffers are final. It
// starts the push of every shard whose range now lies within [lo, …), in
// the order of w.order (the backward pass's), skipping a shard that took
// this version already (an earlier attempt whose other pushes failed).
func (p *pushRound) ready(lo int) {
	w := p.w
	if !p.decided {
		p.decided, p.confirmed = true, true
		if p.conf != nil {
			p.cst, p.cerr = p.conf.result()
			p.confirmed = p.cerr == nil && !p.cst.Done && p.cst.Step == p.cur.step && p.cst.Generation == p.cur.gen
		}
	}
	if !p.confirmed {
		return
	}
	for ; p.next < len(w.order) && w.ranges[w.order[p.next]].Lo >= lo; p.next++ {
		k := w.order[p.next]
		if w.pushed[k] == p.cur {
			continue
		}
		r := w.ranges[k]
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			ctx, cancel := context.WithTimeout(p.ctx, w.cfg.PullTimeout)
			defer cancel()
			if err := w.shards[k].Push(ctx, p.cur.step, w.cfg.Slot, w.grad[r.Lo:r.Hi], w.out[r.BufLo:r.BufHi]); err != nil {
				p.errs[k] = fmt.Errorf("shard %d: %w", k, err)
				return
			}
			w.pushed[k] = p.cur
		}()
	}
}

// wait waits for the pushes started and joins their errors.
func (p *pushRound) wait() error {
	p.wg.Wait()
	return errors.Join(p.errs...)
}

// prefetch is the pull of version (t+1, gen) started right after the pushes
// of step t, with the coordinator's WaitStep(t, gen) beside it.
type prefetch struct {
	t, gen int64
	ctx    context.Context
	coord  Coordinator
	cancel context.CancelFunc
	pulled chan error // the pull round's outcome
	waited chan waited
	wg     sync.WaitGroup
}

type waited struct {
	st  StepState
	err error
}

// prefetch starts pulling version (t+1, gen) of every shard into the
// worker's parameters (pulled[] says which slices arrived) and waiting for
// the coordinator to leave (t, gen). Until next or stop returns, nothing
// else may touch params, bufs or pulled.
func (w *Worker) prefetch(ctx context.Context, t, gen int64) *prefetch {
	ctx, cancel := context.WithCancel(ctx)
	p := &prefetch{t: t, gen: gen, ctx: ctx, coord: w.coord, cancel: cancel, pulled: make(chan error, 1), waited: make(chan waited, 1)}
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		p.pulled <- w.fetch(ctx, t+1, gen)
	}()
	go func() {
		defer p.wg.Done()
		st, err := w.coord.WaitStep(ctx, t, gen)
		p.waited <- waited{st, err}
	}()
	return p
}

// next returns the state to go on from. When every slice of (t+1, gen) has
// arrived that is (t+1, gen) itself, tentatively: the step is computed at
// once, and the confirmation before its pushes checks it. Otherwise it is
// the coordinator's answer (a rollback, a step decided without this worker,
// a failed pull's fallback), with the pulls cancelled as soon as that
// answer is not (t+1, gen).
func (p *prefetch) next() (StepState, error) {
	defer p.stop()
	select {
	case err := <-p.pulled:
		if err == nil {
			select {
			case r := <-p.waited:
				if r.err != nil || r.st.Done || r.st.Step != p.t+1 || r.st.Generation != p.gen {
					return r.st, r.err // the coordinator has moved elsewhere already
				}
			default:
			}
			return StepState{Step: p.t + 1, Generation: p.gen}, nil
		}
		r := <-p.waited
		return r.st, r.err
	case r := <-p.waited:
		if r.err == nil && !r.st.Done && r.st.Step == p.t+1 && r.st.Generation == p.gen {
			// The shards have applied step t, so the pulls are answered
			// now — unless a rollback restores the shards below t+1
			// before a pull reaches them: then the pull would wait for a
			// version that needs this worker's next step. Whichever comes
			// first, the slices or the coordinator leaving (t+1, gen).
			moved := make(chan waited, 1)
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				st, err := p.coord.WaitStep(p.ctx, p.t+1, p.gen)
				moved <- waited{st, err}
			}()
			select {
			case <-p.pulled:
			case m := <-moved:
				return m.st, m.err
			}
		}
		return r.st, r.err
	}
}

// stop cancels what is still in flight and waits for it; nil-safe and
// idempotent.
func (p *prefetch) stop() {
	if p == nil {
		return
	}
	p.cancel()
	p.wg.Wait()
}
