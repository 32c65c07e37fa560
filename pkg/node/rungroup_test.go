package node

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/run"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// TestRunGroupStopsInOrder: whichever actor ends first — ctx, or the loop
// with an error — every component stops in the order of the Adds, the
// loop's interrupt returning only once the loop has returned, and the
// group returns the first actor's result (nil for a requested stop).
func TestRunGroupStopsInOrder(t *testing.T) {
	for _, tc := range []struct {
		name    string
		loopErr error // the loop ends by itself with this error; nil: ctx ends first
	}{{"ctx ends", nil}, {"the loop fails", errors.New("no common step")}} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var order []string
			note := func(s string) { mu.Lock(); order = append(order, s); mu.Unlock() }
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang guard
			defer cancel()
			stopCtx, stop := context.WithCancel(ctx)
			defer stop()
			var g run.Group
			addActor(&g, loopActor(stopCtx, func(ctx context.Context) error {
				if tc.loopErr != nil {
					note("loop")
					return tc.loopErr
				}
				<-ctx.Done()
				time.Sleep(10 * time.Millisecond) // winding down: the next stop waits
				note("loop")
				return nil
			}))
			addActor(&g, stopActor(func() { note("gossip") }))
			addActor(&g, grpcActor(grpc.NewServer(), ln, time.Minute, zap.NewNop()))
			addActor(&g, stopActor(func() { note("http") }))
			addActor(&g, ctxActor(stopCtx))
			done := make(chan error, 1)
			go func() { done <- g.Run() }()
			if tc.loopErr == nil {
				stop()
			}
			select {
			case err := <-done:
				if !errors.Is(err, tc.loopErr) {
					t.Fatalf("group: %v, want %v", err, tc.loopErr)
				}
			case <-ctx.Done():
				t.Fatal("the group did not stop")
			}
			if got := strings.Join(order, ","); got != "loop,gossip,http" {
				t.Fatalf("stop order %s, want loop,gossip,http", got)
			}
			if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
				t.Fatal("the gRPC listener is still open")
			}
		})
	}
}
