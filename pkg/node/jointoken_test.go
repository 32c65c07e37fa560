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

	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/rpc"
	"github.com/logitpair/logitpair/pkg/train"
)

// noTokenWarnings are the "no join token" warnings in logs.
func noTokenWarnings(logs *observer.ObservedLogs) []observer.LoggedEntry {
	return logs.FilterLevelExact(zapcore.WarnLevel).FilterMessageSnippet("no join token").All()
}

// TestNoJoinTokenWarnsAtStart: without --join-token the servers check none
// (rpc.TokenAuth("") installs nothing), so every process warns at start, as
// it does without TLS — the coordinator, a shard and a worker, with and
// without TLS — and says nothing of the kind with a token.
func TestNoJoinTokenWarnsAtStart(t *testing.T) {
	f := mintTestCerts(t)
	for _, c := range []struct {
		name string
		c    Common
		role string
		want string
	}{
		{"server without TLS", Common{}, rpc.RoleCoordinator, "no join token: this server checks none, so anyone who can reach this port can join"},
		{"worker without TLS", Common{}, rpc.RoleWorker, "no join token: this worker sends none"},
		{"server with TLS", withTLS(Common{}, f[rpc.RoleParamServer]), rpc.RoleParamServer, "no join token: this server checks none, so any process with a certificate from --tls-ca"},
		{"worker with TLS", withTLS(Common{}, f[rpc.RoleWorker]), rpc.RoleWorker, "no join token: this worker sends none"},
	} {
		_, logs := ready(t, c.c, c.role)
		w := noTokenWarnings(logs)
		if len(w) != 1 || !strings.HasPrefix(w[0].Message, c.want) || !strings.Contains(w[0].Message, "--join-token") {
			t.Errorf("%s: warnings %v, want one beginning %q", c.name, w, c.want)
		}
		withToken := c.c
		withToken.JoinToken = "tok"
		if _, logs := ready(t, withToken, c.role); len(noTokenWarnings(logs)) != 0 {
			t.Errorf("%s with a token: %v", c.name, noTokenWarnings(logs))
		}
	}

	// Each Run function warns before it listens or dials (a cancelled
	// context ends them right after).
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	sec, err := NewSecrets()
	if err != nil {
		t.Fatal(err)
	}
	gossip := Common{GossipKey: sec.GossipKey, GossipBind: "127.0.0.1:0", GossipFast: true}
	tc := train.DefaultConfig()
	tc.ModelConfig = models.Config{"conv1": 2, "conv2": 4, "hidden": 16}
	dir := t.TempDir()
	for name, run := range map[string]func(log *zap.Logger) error{
		"coordinator": func(log *zap.Logger) error {
			return RunCoordinator(ctx, CoordinatorOptions{Common: gossip, Listen: "127.0.0.1:0", Dir: filepath.Join(dir, "coordinator"), Workers: 2, PS: 1, Train: tc}, log)
		},
		"paramserver": func(log *zap.Logger) error {
			return RunParamServer(ctx, ParamServerOptions{Common: gossip, Coordinator: "127.0.0.1:1", Listen: "127.0.0.1:0", Dir: filepath.Join(dir, "ps-0")}, log)
		},
		"worker": func(log *zap.Logger) error {
			return RunWorker(ctx, WorkerOptions{Common: gossip, Coordinator: "127.0.0.1:1", Slot: -1, Threads: 1}, log)
		},
	} {
		core, logs := observer.New(zapcore.InfoLevel)
		done := make(chan error, 1)
		go func() { done <- run(zap.New(core)) }()
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Fatalf("%s did not stop on a cancelled context", name)
		}
		if w := noTokenWarnings(logs); len(w) != 1 {
			t.Errorf("%s: %d join-token warnings %v", name, len(w), logs.All())
		}
	}
}
