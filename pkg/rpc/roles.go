package rpc

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	coordinatorv1 "github.com/logitpair/logitpair/pkg/api/coordinator/v1"
	paramserverv1 "github.com/logitpair/logitpair/pkg/api/paramserver/v1"
	"github.com/logitpair/logitpair/pkg/tlsutil"
)

// Roles of JoinRequest.role and of certificates (pkg/tlsutil owns the
// names; see MethodRoles).
const (
	RoleWorker      = tlsutil.RoleWorker
	RoleParamServer = tlsutil.RoleParamServer
	RoleCoordinator = tlsutil.RoleCoordinator
)

// methodRoles is the role table: for every method of the cluster's two
// services, the roles (of the caller's verified client certificate, see
// tlsutil.CertRole) that may call it. It is the one place that says who
// may do what; Guard enforces it with TLS on. A method missing from it is
// refused to everyone, and a test checks that every method of the
// generated service descriptors is here, so a new RPC cannot be forgotten.
var methodRoles = map[string][]string{
	// A shard's parameters are read by the workers and by the coordinator,
	// which pulls them to write the whole-model checkpoint; only workers
	// push gradients.
	paramserverv1.ParameterServer_Pull_FullMethodName: {RoleWorker, RoleCoordinator},
	paramserverv1.ParameterServer_Push_FullMethodName: {RoleWorker},
	// What changes a shard's committed state, or reads its optimizer state,
	// is the coordinator's alone: a step enters a shard only as the
	// coordinator logged it.
	paramserverv1.ParameterServer_Apply_FullMethodName:      {RoleCoordinator},
	paramserverv1.ParameterServer_State_FullMethodName:      {RoleCoordinator},
	paramserverv1.ParameterServer_Checkpoint_FullMethodName: {RoleCoordinator},
	paramserverv1.ParameterServer_Restore_FullMethodName:    {RoleCoordinator},
	paramserverv1.ParameterServer_FetchState_FullMethodName: {RoleCoordinator},
	paramserverv1.ParameterServer_Held_FullMethodName:       {RoleCoordinator},
	// Membership: workers and shards join, read their assignment and leave,
	// each only as its own role (roleBound).
	coordinatorv1.Coordinator_Join_FullMethodName:          {RoleWorker, RoleParamServer},
	coordinatorv1.Coordinator_GetAssignment_FullMethodName: {RoleWorker, RoleParamServer},
	coordinatorv1.Coordinator_Leave_FullMethodName:         {RoleWorker, RoleParamServer},
	// The step: only workers report and wait.
	coordinatorv1.Coordinator_ReportStep_FullMethodName: {RoleWorker},
	coordinatorv1.Coordinator_WaitStep_FullMethodName:   {RoleWorker},
	// Read-only, for operators (`logitpair cluster status` with any role's
	// certificate).
	coordinatorv1.Coordinator_Status_FullMethodName: {RoleCoordinator, RoleParamServer, RoleWorker},
}

// roleBound is a request that names the role its caller acts as (Join,
// GetAssignment, Leave): with roles enforced it must be the certificate's
// role, so that a worker cannot join, or leave, as a shard.
type roleBound interface{ GetRole() string }

// checkRole returns the caller's role and, unless method's entry in the
// role table allows it (and req, if it names a role, names that one), a
// PERMISSION_DENIED error naming the method and the role.
func checkRole(ctx context.Context, method string, req any) (string, error) {
	role, err := peerRole(ctx)
	if err != nil {
		return "", status.Errorf(codes.PermissionDenied, "%s: %v", method, err)
	}
	if role == "" {
		return "", status.Errorf(codes.PermissionDenied,
			"%s: the client certificate carries no role (minted before roles): mint per-role certificates with `logitpair certs` and give each process its role's (%s)",
			method, strings.Join(tlsutil.AllRoles, ", "))
	}
	allowed, ok := methodRoles[method]
	if !ok {
		return role, status.Errorf(codes.PermissionDenied, "%s is not in the role table: no role may call it", method)
	}
	if !slices.Contains(allowed, role) {
		return role, status.Errorf(codes.PermissionDenied, "%s is not allowed for role %s (only %s)", method, role, strings.Join(allowed, ", "))
	}
	if rb, ok := req.(roleBound); ok && rb.GetRole() != role {
		return role, status.Errorf(codes.PermissionDenied, "%s as %q is not allowed for role %s: a member acts only as its certificate's role",
			method, rb.GetRole(), role)
	}
	return role, nil
}

// peerRole is the role of the verified client certificate of the call's
// connection ("" when it carries none).
func peerRole(ctx context.Context) (string, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", fmt.Errorf("no peer information")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return "", fmt.Errorf("the connection carries no verified client certificate (roles need mutual TLS)")
	}
	return tlsutil.CertRole(ti.State.VerifiedChains[0][0])
}
