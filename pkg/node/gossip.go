package node

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/logitpair/logitpair/pkg/membership"
	"github.com/logitpair/logitpair/pkg/retry"
)

// Gossip membership (pkg/membership) as every process uses it: start and
// join with retries, re-join a restarted coordinator, and leave once on the
// way out.

// gossipJoinWindow bounds how long a process keeps retrying its first gossip
// join: the coordinator's gossip listener may be slow to answer (a loaded
// machine, a pod still starting), and one failed TCP dial must not end a
// process that a retry a moment later would have joined.
const gossipJoinWindow = time.Minute

func (c Common) startGossip(ctx context.Context, name string, meta membership.Meta, onEvent func(membership.Event)) (*membership.Node, error) {
	key, err := membership.ParseKey(c.GossipKey)
	if err != nil {
		return nil, err
	}
	host, p, err := membership.ParseBind(c.GossipBind)
	if err != nil {
		return nil, fmt.Errorf("--gossip-bind %q: %w", c.GossipBind, err)
	}
	n, err := membership.Start(membership.Config{Name: name, Meta: meta, BindAddr: host, BindPort: p, Key: key, Fast: c.GossipFast, OnEvent: onEvent})
	if err != nil {
		return nil, err
	}
	if c.GossipJoin != "" {
		if err := joinWithRetry(ctx, n, c.GossipJoin, gossipJoinWindow); err != nil {
			n.Leave(time.Second)
			return nil, err
		}
	}
	return n, nil
}

// joinWithRetry joins the gossip cluster at addr, retrying with jittered
// exponential backoff (retry.Backoff, 250 ms doubling to 4 s) until it
// succeeds, ctx ends or window has passed; the error then names the
// address, the attempts and the last cause.
func joinWithRetry(ctx context.Context, n *membership.Node, addr string, window time.Duration) error {
	deadline := time.Now().Add(window)
	bo := retry.New(250*time.Millisecond, 4*time.Second)
	for attempt := 1; ; attempt++ {
		err := n.Join(addr)
		if err == nil {
			return nil
		}
		wait := bo.Next()
		if time.Now().Add(wait).After(deadline) {
			return fmt.Errorf("joining the gossip cluster at %s: %d attempts over %s: %w", addr, attempt, window, err)
		}
		if serr := retry.Sleep(ctx, wait); serr != nil {
			return fmt.Errorf("joining the gossip cluster at %s: %w (last attempt: %v)", addr, serr, err)
		}
	}
}

// gossipLeaveTimeout bounds how long a stopping process waits for its
// gossip leave message to go out.
const gossipLeaveTimeout = 2 * time.Second

// gossipMember is a process's gossip membership as its shutdown sees it:
// leave leaves the cluster once (memberlist panics on a second Leave), so
// both the gossip actor (gossipActor), in the shutdown order, and a
// deferred call on an early return may call it.
type gossipMember struct {
	n    *membership.Node
	log  *zap.Logger
	once sync.Once
}

func newGossipMember(n *membership.Node, log *zap.Logger) *gossipMember {
	return &gossipMember{n: n, log: log}
}

// leave broadcasts this process's departure, so that its peers see it leave
// gracefully rather than stop answering probes, and shuts memberlist down.
func (g *gossipMember) leave() {
	g.once.Do(func() {
		if err := g.n.Leave(gossipLeaveTimeout); err != nil {
			g.log.Warn("leaving the gossip cluster: the leave message may not have gone out; peers will declare this process dead instead", zap.Error(err))
			return
		}
		g.log.Info("left the gossip cluster")
	})
}

// rejoinGossip re-joins the gossip cluster through the coordinator's gossip
// address whenever no coordinator is among the live members (it restarted).
func rejoinGossip(ctx context.Context, n *membership.Node, addr string) {
	if addr == "" {
		return
	}
	retry.Every(ctx, 2*time.Second, func(context.Context) {
		for _, m := range n.Live() {
			if m.Role == "coordinator" {
				return
			}
		}
		_ = n.Join(addr)
	})
}
