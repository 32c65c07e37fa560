package node

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	paramserverv1 "github.com/logitpair/logitpair/pkg/api/paramserver/v1"
	"github.com/logitpair/logitpair/pkg/membership"
	"github.com/logitpair/logitpair/pkg/rpc"
)

// waitUntil polls cond every 10 ms until it holds, failing the test after
// limit (a bound on a hang, not a timing assertion).
func waitUntil(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestStoppingShardLeavesGossipBeforeItsRPCsStop: a parameter server told to
// stop first leaves the gossip cluster — its leave message goes out (a
// graceful departure, not a death after missed probes) and a peer sees it
// gone — while an RPC it is serving is still in flight; only then does it
// stop its gRPC server, gracefully, letting that RPC finish. The stop is
// held open by a Pull for a version the shard never reaches, so the order
// does not depend on timing: had the server stopped first, the Pull would
// have ended (after the 10 s grace, hard) before the peer saw the shard
// leave.
func TestStoppingShardLeavesGossipBeforeItsRPCsStop(t *testing.T) {
	sec, err := NewSecrets()
	if err != nil {
		t.Fatal(err)
	}
	key, err := membership.ParseKey(sec.GossipKey)
	if err != nil {
		t.Fatal(err)
	}
	// The peer: a gossip member in the coordinator's role (so the shard
	// does not try to rejoin), recording departures.
	gone := make(chan membership.Event, 16)
	peer, err := membership.Start(membership.Config{Name: "peer", Meta: membership.Meta{Role: "coordinator", Slot: -1}, BindAddr: "127.0.0.1", Key: key, Fast: true,
		OnEvent: func(e membership.Event) {
			if !e.Alive {
				gone <- e
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Leave(time.Second)
	coordAddr := serveCoord(t, Common{})

	dir := t.TempDir()
	core, logs := observer.New(zapcore.InfoLevel)
	o := ParamServerOptions{Common: Common{GossipKey: sec.GossipKey, GossipBind: "127.0.0.1:0", GossipFast: true, GossipJoin: peer.Addr(),
		AddrFile: filepath.Join(dir, "ps.json")}, Coordinator: coordAddr, Listen: "127.0.0.1:0", Dir: filepath.Join(dir, "ps-0")}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- RunParamServer(ctx, o, zap.New(core)) }()
	var addrs Addrs
	waitUntil(t, time.Minute, "the shard announces its addresses", func() bool {
		select {
		case err := <-done:
			t.Fatalf("the shard stopped: %v", err)
		default:
		}
		addrs, _ = ReadAddrs(o.AddrFile)
		return addrs.GRPC != ""
	})
	waitUntil(t, time.Minute, "the peer sees the shard", func() bool {
		for _, m := range peer.Live() {
			if m.Role == rpc.RoleParamServer {
				return true
			}
		}
		return false
	})

	conn, err := grpc.NewClient(addrs.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ps := paramserverv1.NewParameterServerClient(conn)
	pullCtx, endPull := context.WithCancel(context.Background())
	defer endPull()
	stream, err := ps.Pull(pullCtx, &paramserverv1.PullRequest{Step: 1 << 40}) // a version the shard never reaches
	if err != nil {
		t.Fatal(err)
	}
	pulled := make(chan error, 1)
	go func() { _, err := stream.Recv(); pulled <- err }()
	// A later call on the same connection returning means the server has
	// taken the Pull's stream: a graceful stop waits for it.
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	_, err = ps.State(sctx, &paramserverv1.StateRequest{})
	cancel()
	if err != nil {
		t.Fatal(err)
	}

	stop() // SIGTERM
	var ev membership.Event
	select {
	case ev = <-gone:
	case err := <-done:
		t.Fatalf("the shard stopped (%v) before the peer saw it leave", err)
	case <-time.After(time.Minute):
		t.Fatal("the peer did not see the shard leave")
	}
	if ev.Meta.Role != rpc.RoleParamServer || !strings.HasPrefix(ev.Node, "ps-0-") {
		t.Fatalf("departure %+v", ev)
	}
	// Leave returns once its message went out; the peer may see it first.
	waitUntil(t, time.Minute, "the shard's leave returns", func() bool {
		return logs.FilterMessageSnippet("gossip cluster").Len() > 0
	})
	select {
	case err := <-pulled:
		t.Fatalf("the shard's in-flight Pull ended (%v) before it left gossip: gRPC stopped first", err)
	default:
	}
	if logs.FilterMessage("left the gossip cluster").Len() != 1 {
		t.Fatalf("no graceful leave logged: %v", logs.All())
	}
	if logs.FilterMessage("gRPC server stopped").Len() != 0 {
		t.Fatal("gRPC stopped before the in-flight Pull ended")
	}

	endPull() // the client gives up; the graceful stop completes
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("RunParamServer: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the shard did not stop")
	}
	var order []string
	for _, e := range logs.All() {
		switch e.Message {
		case "left the gossip cluster":
			order = append(order, "leave")
		case "gRPC server stopped":
			order = append(order, "stop")
			if g, ok := e.ContextMap()["graceful"].(bool); !ok || !g {
				t.Errorf("gRPC stop %v, want graceful", e.ContextMap())
			}
		}
	}
	if strings.Join(order, ",") != "leave,stop" {
		t.Fatalf("shutdown order %v, want leave, stop", order)
	}
}
