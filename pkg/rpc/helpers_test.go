package rpc

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/logitpair/logitpair/pkg/models"
	"github.com/logitpair/logitpair/pkg/paramserver"
	"github.com/logitpair/logitpair/pkg/tlsutil"
	"github.com/logitpair/logitpair/pkg/train"
)

// TestMain fails the package when goroutines outlive the tests (servers,
// streams or connections left running).
func TestMain(m *testing.M) {
	base := runtime.NumGoroutine()
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > base {
			buf := make([]byte, 1<<20)
			fmt.Fprintf(os.Stderr, "%d goroutines left running (%d before the tests):\n%s\n", n, base, buf[:runtime.Stack(buf, true)])
			code = 1
		}
	}
	os.Exit(code)
}

// ctxFor bounds a test's waits.
func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// serve runs a gRPC server with opts on an in-memory listener until the
// test ends; register adds its services.
func serve(t *testing.T, opts []grpc.ServerOption, register func(grpc.ServiceRegistrar)) *bufconn.Listener {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	s := grpc.NewServer(opts...)
	register(s)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(lis)
	}()
	t.Cleanup(func() {
		s.Stop()
		<-done
	})
	return lis
}

// dial connects to lis through bufconn (closed when the test ends, before
// the server stops).
func dial(t *testing.T, lis *bufconn.Listener, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	opts = append([]grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	}, opts...)
	conn, err := grpc.NewClient("passthrough:///bufnet", opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// newShard builds a paramserver.Local of n parameters and nb buffers for workers
// workers (paramserver.DefaultConfig: RMSProp), random initial values from seed.
func newShard(t *testing.T, n, nb, workers int, seed uint64) *paramserver.Local {
	t.Helper()
	cfg := paramserver.DefaultConfig()
	cfg.Hi, cfg.BufHi, cfg.Workers = n, nb, workers
	rng := rand.New(rand.NewPCG(seed, 1))
	cfg.InitBuffers = randFloats(rng, nb)
	ls, err := paramserver.NewLocal(cfg, randFloats(rng, n), paramserver.NewMemStepStore())
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

// randFloats returns n finite values with awkward bit patterns among them
// (−0, the smallest subnormal, the largest float32).
func randFloats(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	special := []float32{float32(math.Copysign(0, -1)), math.SmallestNonzeroFloat32, math.MaxFloat32, -math.MaxFloat32}
	for i, x := range special {
		if i < n {
			v[(i*7919)%n] = x
		}
	}
	return v
}

func sameBits(t *testing.T, what string, a, b []float32) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%s: lengths %d and %d", what, len(a), len(b))
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			t.Fatalf("%s: element %d: %v vs %v", what, i, a[i], b[i])
		}
	}
}

// wantCode fails unless err has code c and its message contains every part.
func wantCode(t *testing.T, what string, err error, c codes.Code, parts ...string) {
	t.Helper()
	st, _ := status.FromError(err)
	if err == nil || st.Code() != c {
		t.Fatalf("%s: got %v, want code %s", what, err, c)
	}
	for _, p := range parts {
		if !strings.Contains(st.Message(), p) {
			t.Fatalf("%s: message %q does not mention %q", what, st.Message(), p)
		}
	}
}

// The tiny model and synthetic data set of pkg/cluster's tests.

func tinyConfig(t *testing.T) train.Config {
	c := train.DefaultConfig()
	c.Dataset = "synthetic"
	c.ModelConfig = models.Config{"conv1": 2, "conv2": 2, "hidden": 8}
	c.Batch, c.Steps = 4, 5
	c.AttackSteps, c.StepSize, c.Eps = 2, 0.05, 0.1
	c.Optimizer, c.LR, c.WeightDecay, c.EMA = "rmsprop", 0.01, 1e-3, 0.9
	c.Out, c.CheckpointEvery, c.LogEvery = t.TempDir(), 0, 0
	return c
}

// loopbackIdentity is a fresh CA and a certificate for 127.0.0.1 it
// issued: one identity that serves and dials over loopback with mutual TLS.
func loopbackIdentity(tb testing.TB) *tlsutil.Identity {
	tb.Helper()
	ca, err := tlsutil.NewCA(tlsutil.CAOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	cert, key, err := ca.Issue(tlsutil.CertOptions{Hosts: []string{"127.0.0.1"}})
	if err != nil {
		tb.Fatal(err)
	}
	id, err := tlsutil.FromPEM(ca.CertPEM, cert, key)
	if err != nil {
		tb.Fatal(err)
	}
	return id
}
