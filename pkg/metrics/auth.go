package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/logitpair/logitpair/pkg/rpc"
)

// Auth counts what a gRPC server's guard (rpc.Guard) refused.
type Auth struct {
	refused *prometheus.CounterVec
}

// NewAuth registers logitpair_auth_refused_total{reason} on reg, every
// reason (rpc.RefusalReasons) exported from zero so that a rate over it
// works from the first scrape.
func NewAuth(reg prometheus.Registerer) (*Auth, error) {
	m := &Auth{refused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "auth_refused_total",
		Help: "Calls and TLS handshakes the gRPC server refused, by reason: token (missing or wrong join token), handshake (failed TLS handshake), role (the certificate's role may not make the call)."},
		[]string{"reason"})}
	for _, r := range rpc.RefusalReasons {
		m.refused.WithLabelValues(r)
	}
	if err := register(reg, m.refused); err != nil {
		return nil, err
	}
	return m, nil
}

// Refused counts one refusal; it is rpc.GuardConfig.OnRefused.
func (m *Auth) Refused(reason string) { m.refused.WithLabelValues(reason).Inc() }
