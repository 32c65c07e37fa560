package node

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/oklog/run"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// Each process body runs its long-lived components as the actors of a
// run.Group (github.com/oklog/run): execute runs a component, interrupt
// stops it. The first actor to return — the work is done, a component
// failed, or ctx ended — makes the group interrupt every actor, one after
// another in the order they were added, each interrupt returning only once
// its component has stopped. So the order of the Add calls is the process's
// shutdown order (package doc), and each body comments it.

// actor is one execute/interrupt pair of a run.Group.
type actor struct {
	execute   func() error
	interrupt func(error)
}

// addActor adds a to g.
func addActor(g *run.Group, a actor) { g.Add(a.execute, a.interrupt) }

// loopActor runs fn until it returns (the process's work: the coordinator
// loop, the worker loop) or is interrupted; interrupt cancels fn's context
// and waits for fn to return, so that the work has stopped before the next
// component stops.
func loopActor(ctx context.Context, fn func(ctx context.Context) error) actor {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	return actor{
		execute: func() error {
			defer close(done)
			return fn(ctx)
		},
		interrupt: func(error) {
			cancel()
			<-done
		},
	}
}

// stopActor runs until interrupted, then calls stop (nil: nothing) and
// returns once stop has.
func stopActor(stop func()) actor {
	quit := make(chan struct{})
	var once sync.Once
	return actor{
		execute: func() error { <-quit; return nil },
		interrupt: func(error) {
			once.Do(func() {
				if stop != nil {
					stop()
				}
				close(quit)
			})
		},
	}
}

// ctxActor returns when ctx ends (SIGINT/SIGTERM, or the caller stopping
// the process): a requested stop, so it returns nil.
func ctxActor(ctx context.Context) actor {
	ctx, cancel := context.WithCancel(ctx)
	return actor{
		execute:   func() error { <-ctx.Done(); return nil },
		interrupt: func(error) { cancel() },
	}
}

// gossipActor keeps this process in the gossip cluster — re-joining it
// through the coordinator's gossip address join whenever no coordinator is
// live (join "": never) — until interrupted, then leaves it (g.leave, which
// returns once the leave message went out or gossipLeaveTimeout passed).
func gossipActor(g *gossipMember, join string) actor {
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	return actor{
		execute: func() error {
			defer close(stopped)
			rejoinGossip(ctx, g.n, join)
			<-ctx.Done()
			return nil
		},
		interrupt: func(error) {
			cancel()
			<-stopped // no re-join after the leave
			g.leave()
		},
	}
}

// grpcActor serves srv on ln. Interrupted, it stops srv gracefully (the
// RPCs in flight finish, new ones are refused) within grace, then hard, and
// logs which; a server that could not serve returns its error.
func grpcActor(srv *grpc.Server, ln net.Listener, grace time.Duration, log *zap.Logger) actor {
	return actor{
		execute: func() error {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				return err
			}
			return nil
		},
		interrupt: func(error) {
			done := make(chan struct{})
			go func() { srv.GracefulStop(); close(done) }()
			graceful := true
			select {
			case <-done:
			case <-time.After(grace):
				graceful = false
				srv.Stop()
			}
			log.Info("gRPC server stopped", zap.Bool("graceful", graceful))
		},
	}
}
