package rpc

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/logitpair/logitpair/pkg/netbench"
	"github.com/logitpair/logitpair/pkg/optim"
	"github.com/logitpair/logitpair/pkg/paramserver"
	"github.com/logitpair/logitpair/pkg/wire"
)

// pushPullSizes are the shard sizes BenchmarkPushPullLoopback moves: the
// whole parameter and buffer vectors of madry-mnist and of resnet-v2-50 at
// image_size 64 with 1000 classes (the released ALP code's 64×64 model;
// pkg/models' layouts: 25,549,352 trainable parameters, 45,440 batch-norm
// buffer values).
var pushPullSizes = []struct {
	name            string
	params, buffers int
}{
	{"madry-mnist", 3274634, 0},
	{"resnet-v2-50", 25549352, 45440},
}

// BenchmarkPushPullLoopback (issue 5 benchmark i, issue 13): one worker's
// pull of a whole shard (parameters and buffers) plus its push of a
// gradient and buffers of the same size, on real TCP loopback, for each of
// pushPullSizes, over
//
//   - grpc-mtls: gRPC with mutual TLS (tlsutil identities, as a cluster
//     with --tls-* runs),
//   - grpc-plain: gRPC in plaintext,
//   - grpc-mtls-bf16: grpc-mtls with the gradient pushed as bfloat16
//     (WithWireFormat(wire.BF16): 2 bytes a value; its MB/s and ratio
//     still count 4),
//   - raw-tcp: netbench.RawTCP, the same bytes each way over one bare
//     connection (what a perfect transport would need),
//   - memcpy: a memory copy of the same bytes both ways.
//
// Every sub-benchmark reports MB/s of payload (pull + push bytes per
// second); the gRPC ones and memcpy also report x-raw-tcp, their rate over
// raw TCP's, measured with as many rounds right after their own (outside
// the timer), so that the ratio compares the two on the machine as it was
// then; the gRPC ones and raw-tcp report cpu-ms/op, the process's CPU time
// per round (client and server together: on a machine shared with other
// work the CPU a round needs, not the wall time, is what stays put). The step is applied with plain SGD between rounds, outside the
// timer, so the next pull is of a new version: the benchmark is the
// transfer.
func BenchmarkPushPullLoopback(b *testing.B) {
	for _, size := range pushPullSizes {
		b.Run(size.name, func(b *testing.B) { benchPushPull(b, size.params, size.buffers) })
	}
}

// benchPushPull runs BenchmarkPushPullLoopback's sub-benchmarks for a shard
// of n parameters and nb buffer values.
func benchPushPull(b *testing.B, n, nb int) {
	cfg := paramserver.DefaultConfig()
	cfg.Hi, cfg.BufHi, cfg.Workers = n, nb, 1
	cfg.Optim, _ = optim.DefaultConfig(optim.KindSGD) // the cheapest apply
	rng := rand.New(rand.NewPCG(1, 1))
	grad := make([]float32, n) // the initial parameters, then the gradient
	for i := range grad {
		grad[i] = rng.Float32()
	}
	cfg.InitBuffers = make([]float32, nb)
	for i := range cfg.InitBuffers {
		cfg.InitBuffers[i] = rng.Float32()
	}
	shard, err := paramserver.NewLocal(cfg, grad, paramserver.NewMemStepStore())
	if err != nil {
		b.Fatal(err)
	}
	defer shard.S.Close()
	for i := range grad {
		grad[i] = 1e-3
	}
	bufs := cfg.InitBuffers
	each := int64(4 * (n + nb)) // bytes each way per round

	id := loopbackIdentity(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	transports := []struct {
		name   string
		srv    []grpc.ServerOption
		dial   []grpc.DialOption
		format wire.Format
	}{
		{"grpc-mtls", TransportServerOptions(id.ServerCredentials()), TransportDialOptions(id.ClientCredentials("")), wire.Float32},
		{"grpc-plain", TransportServerOptions(nil), TransportDialOptions(insecure.NewCredentials()), wire.Float32},
		{"grpc-mtls-bf16", TransportServerOptions(id.ServerCredentials()), TransportDialOptions(id.ClientCredentials("")), wire.BF16},
	}
	for _, tr := range transports {
		b.Run(tr.name, func(b *testing.B) {
			client, stop := benchServe(b, shard, tr.srv, tr.dial, WithWireFormat(tr.format))
			defer stop()
			var cpu time.Duration
			round := func() {
				c0 := cpuTime(b)
				step := shard.S.Version()
				if _, _, err := client.Pull(ctx, step); err != nil {
					b.Fatal(err)
				}
				if err := client.Push(ctx, step, 0, grad, bufs); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				cpu += cpuTime(b) - c0
				if err := shard.S.Apply(step, []int{0}); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			round() // the connection's handshake and first windows: not timed
			b.SetBytes(2 * each)
			cpu = 0
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				round()
			}
			reportVsRawTCP(b, each)
			b.ReportMetric(float64(cpu.Microseconds())/1e3/float64(b.N), "cpu-ms/op")
		})
	}
	b.Run("raw-tcp", func(b *testing.B) {
		c0 := cpuTime(b)
		d, err := netbench.RawTCP(each, b.N)
		if err != nil {
			b.Fatal(err)
		}
		cpu := cpuTime(b) - c0
		b.ReportMetric(float64(cpu.Microseconds())/1e3/float64(b.N+1), "cpu-ms/op") // with its warm-up round
		b.ReportMetric(float64(d.Nanoseconds()), "ns/op")
		b.ReportMetric(float64(2*each)/d.Seconds()/1e6, "MB/s")
	})
	b.Run("memcpy", func(b *testing.B) {
		b.SetBytes(2 * each)
		dst := make([]float32, n+nb)
		src := make([]float32, n+nb)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			copy(dst, src)
			copy(src, dst)
		}
		reportVsRawTCP(b, each)
	})
}

// benchServe serves shard over gRPC on 127.0.0.1 with srv's options and
// returns a client dialed with dial's, and a function that stops both.
func benchServe(b *testing.B, shard *paramserver.Local, srv []grpc.ServerOption, dial []grpc.DialOption, opts ...PSClientOption) (*PSClient, func()) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := grpc.NewServer(srv...)
	NewPSServer(shard).Register(s)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(ln)
	}()
	conn, err := grpc.NewClient(ln.Addr().String(), dial...)
	if err != nil {
		s.Stop()
		<-done
		b.Fatal(err)
	}
	return NewPSClient(conn, 0, append(opts, WithWorkerSlot(0))...), func() {
		conn.Close()
		s.Stop()
		<-done
	}
}

// cpuTime is the CPU time the process has used so far, user and system.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportVsRawTCP stops b's timer and reports x-raw-tcp: the rate of b's
// timed rounds over raw TCP's, measured now with as many rounds of each
// bytes each way.
func reportVsRawTCP(b *testing.B, each int64) {
	b.StopTimer()
	per := b.Elapsed() / time.Duration(b.N)
	raw, err := netbench.RawTCP(each, b.N)
	if err != nil {
		b.Fatal(fmt.Errorf("the raw-TCP baseline: %w", err))
	}
	b.ReportMetric(float64(raw)/float64(per), "x-raw-tcp")
}
