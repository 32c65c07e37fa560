// Package endpoint is a process's HTTP endpoint: Prometheus /metrics,
// /healthz, /readyz and the extra handlers it is given (a status page). The
// cluster's processes (pkg/node) and `logitpair train --http-listen` serve
// it.
package endpoint

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// ShutdownGrace bounds the graceful shutdown of a process's HTTP server.
const ShutdownGrace = 5 * time.Second

// Server is a process's HTTP endpoint: /metrics, /healthz, /readyz and
// the extra handlers it was given.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	log  *zap.Logger
	done chan struct{}
	once sync.Once
}

// Start serves, on addr:
//
//   - /metrics: reg in the Prometheus exposition format;
//   - /healthz: 200 while the process runs;
//   - /readyz: 200 once ready() says the process is serving, 503 before;
//   - every pattern of extra (http.ServeMux patterns, e.g. "/" for a status
//     page).
//
// An empty addr disables the endpoint: Start returns nil, nil (the nil
// server's methods do nothing). The server stops when ctx ends or Close is
// called: gracefully within ShutdownGrace, then hard.
func Start(ctx context.Context, addr string, reg *prometheus.Registry, ready func() bool, extra map[string]http.Handler, log *zap.Logger) (*Server, error) {
	if addr == "" {
		return nil, nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("--http-listen %q: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: zap.NewStdLog(log), ErrorHandling: promhttp.ContinueOnError, Registry: reg})))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if ready == nil || !ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready")
			return
		}
		fmt.Fprintln(w, "ready")
	})
	for pattern, h := range extra {
		mux.Handle(pattern, h)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--http-listen %s: %w", addr, err)
	}
	s := &Server{
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: zap.NewStdLog(log)},
		ln:  ln, log: log, done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("HTTP server stopped", zap.Error(err))
		}
	}()
	go func() {
		select {
		case <-ctx.Done():
			s.Close()
		case <-s.done:
		}
	}()
	log.Info("HTTP endpoint listening", zap.String("http", ln.Addr().String()))
	return s, nil
}

// Addr returns the address the server listens on ("" for a nil server).
func (s *Server) Addr() string {
	if s == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Close stops the server: gracefully within ShutdownGrace, then hard.
// It returns once the server stopped; later calls do nothing.
func (s *Server) Close() {
	if s == nil {
		return
	}
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), ShutdownGrace)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil {
			s.log.Warn("HTTP server did not stop gracefully; closing", zap.Error(err))
			_ = s.srv.Close()
		}
		<-s.done
	})
}
