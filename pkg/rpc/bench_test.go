package rpc

import (
	"context"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/logitpair/logitpair/pkg/optim"
	"github.com/logitpair/logitpair/pkg/paramserver"
)

// BenchmarkPushPullLoopback (issue 5, benchmark i): one worker's pull of a
// whole shard plus its push of a gradient of the same size, over gRPC on
// real TCP loopback, for madry-mnist's 3,274,634 parameters (13.1 MB each
// way), beside a plain memory copy of the same bytes both ways. Reports
// MB/s of payload (pull + push bytes per second); each round also applies
// the step with plain SGD so the next pull has a new version.
func BenchmarkPushPullLoopback(b *testing.B) {
	const n = 3274634
	cfg := paramserver.DefaultConfig()
	cfg.Hi, cfg.Workers = n, 1
	cfg.Optim, _ = optim.DefaultConfig(optim.KindSGD) // the cheapest apply: the benchmark is the transfer
	rng := rand.New(rand.NewPCG(1, 1))
	init := make([]float32, n)
	for i := range init {
		init[i] = rng.Float32()
	}
	shard, err := paramserver.NewLocal(cfg, init, paramserver.NewMemStepStore())
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer()
	NewPSServer(shard).Register(srv)
	go srv.Serve(ln)
	defer srv.Stop()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	client := NewPSClient(conn, 0, WithWorkerSlot(0))
	grad := make([]float32, n)
	for i := range grad {
		grad[i] = 1e-3
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	bytes := float64(2 * 4 * n)

	b.Run("grpc-loopback", func(b *testing.B) {
		b.SetBytes(int64(bytes))
		for i := 0; i < b.N; i++ {
			step := shard.S.Version()
			if _, _, err := client.Pull(ctx, step); err != nil {
				b.Fatal(err)
			}
			if err := client.Push(ctx, step, 0, grad, nil); err != nil {
				b.Fatal(err)
			}
			if err := shard.S.Apply(step, []int{0}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("memcpy", func(b *testing.B) {
		b.SetBytes(int64(bytes))
		dst := make([]float32, n)
		for i := 0; i < b.N; i++ {
			copy(dst, init)
			copy(grad, dst)
		}
	})
}
