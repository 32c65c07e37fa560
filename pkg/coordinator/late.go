package coordinator

import "sync/atomic"

// Late is a coordinator that is bound after the parts that reach it were
// built. The coordinator process must serve before it can build its
// Coordinator: the shards join through its gRPC server, and New needs the
// shards. So the gRPC service, the status page, the HTTP readiness check
// and the membership's callbacks hold a *Late instead of a *Coordinator,
// and see nil from Get until the wiring calls Set.
//
// A nil *Late is one that is never set. Late is safe for concurrent use.
type Late struct {
	c atomic.Pointer[Coordinator]
}

// Set binds the coordinator. It may be called once: binding twice is a
// wiring bug and panics.
func (l *Late) Set(c *Coordinator) {
	if c == nil || !l.c.CompareAndSwap(nil, c) {
		panic("coordinator: Late.Set called with nil or twice")
	}
}

// Bind binds c as Set does, then makes live in c every worker slot m holds:
// the workers that joined while Get returned nil, whose joins reached only
// the membership table (SetLive is called on a bound coordinator). A join
// after Set reaches c itself.
func (l *Late) Bind(c *Coordinator, m *Membership) {
	l.Set(c)
	c.AdoptJoined(func(slot int) bool { return m.CheckHeld(slot) == nil })
}

// Get returns the coordinator, or nil before Set.
func (l *Late) Get() *Coordinator {
	if l == nil {
		return nil
	}
	return l.c.Load()
}

// Ready reports whether the coordinator is bound and has recovered the
// global step (Coordinator.Ready): the process's readiness.
func (l *Late) Ready() bool {
	c := l.Get()
	if c == nil {
		return false
	}
	select {
	case <-c.Ready():
		return true
	default:
		return false
	}
}
