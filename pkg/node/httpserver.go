package node

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/logitpair/logitpair/pkg/endpoint"
)

// httpServer is a process's HTTP endpoint (pkg/endpoint).
type httpServer = endpoint.Server

// startHTTP serves /metrics, /healthz, /readyz and extra on addr
// (endpoint.Start; an empty addr serves nothing).
func startHTTP(ctx context.Context, addr string, reg *prometheus.Registry, ready func() bool, extra map[string]http.Handler, log *zap.Logger) (*httpServer, error) {
	return endpoint.Start(ctx, addr, reg, ready, extra, log)
}

// nanLinger is how long a worker that stopped on a non-finite loss keeps
// serving /metrics (after leaving the cluster), so that Prometheus scrapes
// logitpair_loss_nan_total before the process exits.
const nanLinger = 30 * time.Second
