package rpc

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/logitpair/logitpair/pkg/paramserver"
)

// ErrorDomain is the errdetails.ErrorInfo domain of the errors this
// package's servers send.
const ErrorDomain = "logitpair.paramserver.v1"

// ErrMalformed is the kind of a push or pull stream that broke the chunking
// rules (gaps, mixed steps, partial elements, too many bytes, a missing last
// chunk): INVALID_ARGUMENT with ErrorInfo reason "MALFORMED". The shard
// never saw it. errors.Is(err, ErrMalformed) works on what PSClient returns.
var ErrMalformed = errors.New("malformed stream")

// kinds maps every paramserver error kind to its ErrorInfo reason and gRPC
// code. Wrong input is INVALID_ARGUMENT (retrying cannot help); the wrong
// step or shard state is FAILED_PRECONDITION (re-read the state, then
// retry); a closed shard is UNAVAILABLE.
var kinds = []struct {
	kind   error
	reason string
	code   codes.Code
}{
	{paramserver.ErrLength, "LENGTH", codes.InvalidArgument},
	{paramserver.ErrNonFinite, "NON_FINITE", codes.InvalidArgument},
	{paramserver.ErrUnknownWorker, "UNKNOWN_WORKER", codes.InvalidArgument},
	{paramserver.ErrConflict, "CONFLICT", codes.InvalidArgument},
	{paramserver.ErrBadSet, "BAD_SET", codes.InvalidArgument},
	{paramserver.ErrBadScale, "BAD_SCALE", codes.InvalidArgument},
	{paramserver.ErrStale, "STALE", codes.FailedPrecondition},
	{paramserver.ErrFuture, "FUTURE", codes.FailedPrecondition},
	{paramserver.ErrMissing, "MISSING", codes.FailedPrecondition},
	{paramserver.ErrSetMismatch, "SET_MISMATCH", codes.FailedPrecondition},
	{paramserver.ErrRestore, "RESTORE", codes.FailedPrecondition},
	{paramserver.ErrClosed, "CLOSED", codes.Unavailable},
}

const reasonMalformed = "MALFORMED"

// KindReason returns the ErrorInfo reason of a paramserver error kind
// (paramserver.ErrStale → "STALE"), or "" for anything else.
func KindReason(kind error) string {
	for _, k := range kinds {
		if k.kind == kind {
			return k.reason
		}
	}
	return ""
}

// Code returns the gRPC code a server answers err with: the kind's code for
// a *paramserver.Error (see the package documentation), DEADLINE_EXCEEDED
// or CANCELED for a context error, the code of an error that already
// carries a status, and INTERNAL for anything else.
func Code(err error) codes.Code {
	return toStatus(err).Code()
}

// toStatus turns a handler's error into the status it answers with.
func toStatus(err error) *status.Status {
	if err == nil {
		return status.New(codes.OK, "")
	}
	var pe *paramserver.Error
	if errors.As(err, &pe) {
		for _, k := range kinds {
			if pe.Kind == k.kind {
				return withInfo(status.New(k.code, err.Error()), k.reason, shardMeta(pe))
			}
		}
		// An optimizer or weight-decay failure inside Apply: the shard is
		// unchanged, but nothing the caller can fix.
		return status.New(codes.Internal, err.Error())
	}
	var gs interface{ GRPCStatus() *status.Status }
	if errors.As(err, &gs) {
		return gs.GRPCStatus()
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, err.Error())
	}
	return status.New(codes.Internal, err.Error())
}

// statusErr is toStatus(err).Err().
func statusErr(err error) error { return toStatus(err).Err() }

func shardMeta(pe *paramserver.Error) map[string]string {
	m := map[string]string{
		"op":      pe.Op,
		"shard":   strconv.Itoa(pe.Shard),
		"step":    strconv.FormatInt(pe.Step, 10),
		"version": strconv.FormatInt(pe.Version, 10),
		"worker":  strconv.Itoa(pe.Worker),
	}
	if len(pe.Workers) > 0 {
		ws := make([]string, len(pe.Workers))
		for i, w := range pe.Workers {
			ws[i] = strconv.Itoa(w)
		}
		m["workers"] = strings.Join(ws, ",")
	}
	if pe.Detail != "" {
		m["detail"] = pe.Detail
	}
	return m
}

// withInfo attaches an ErrorInfo; on the (impossible) failure to marshal it
// the status goes without it.
func withInfo(st *status.Status, reason string, meta map[string]string) *status.Status {
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain, Metadata: meta}); err == nil {
		return d
	}
	return st
}

// malformed is the INVALID_ARGUMENT answer to a stream that broke the
// chunking rules.
func malformed(format string, a ...any) error {
	return withInfo(status.New(codes.InvalidArgument, fmt.Sprintf(format, a...)), reasonMalformed, nil).Err()
}

// RemoteError is an error status received from a server of this package.
// Shard is the shard's typed error when the status carried one (its kind,
// step, version, …, rebuilt from the ErrorInfo), so that
// errors.Is(err, paramserver.ErrStale) and errors.As(err, **paramserver.Error)
// work as they do in memory. status.Code(err) and status.FromError(err) give
// the gRPC status.
type RemoteError struct {
	Status *status.Status
	Shard  *paramserver.Error
	kind   error // ErrMalformed, or a context error for DEADLINE_EXCEEDED / CANCELED
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("rpc error: code = %s desc = %s", e.Status.Code(), e.Status.Message())
}

// GRPCStatus returns the status, for status.FromError and status.Code.
func (e *RemoteError) GRPCStatus() *status.Status { return e.Status }

// Unwrap returns the shard's *paramserver.Error, ErrMalformed,
// context.DeadlineExceeded or context.Canceled, as the status says; nil
// otherwise.
func (e *RemoteError) Unwrap() error {
	if e.Shard != nil {
		return e.Shard
	}
	return e.kind
}

// fromStatus turns an error returned by a gRPC call into a *RemoteError
// (errors that carry no status are returned unchanged).
func fromStatus(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	re := &RemoteError{Status: st}
	switch st.Code() {
	case codes.DeadlineExceeded:
		re.kind = context.DeadlineExceeded
	case codes.Canceled:
		re.kind = context.Canceled
	}
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.GetDomain() != ErrorDomain {
			continue
		}
		if info.GetReason() == reasonMalformed {
			re.kind = ErrMalformed
			continue
		}
		for _, k := range kinds {
			if k.reason == info.GetReason() {
				re.Shard = shardError(k.kind, info.GetMetadata())
			}
		}
	}
	return re
}

// shardError rebuilds a *paramserver.Error from ErrorInfo metadata;
// unparsable numbers are left at 0 (−1 for the worker).
func shardError(kind error, m map[string]string) *paramserver.Error {
	pe := &paramserver.Error{Op: m["op"], Kind: kind, Worker: -1, Detail: m["detail"]}
	pe.Shard, _ = strconv.Atoi(m["shard"])
	pe.Step, _ = strconv.ParseInt(m["step"], 10, 64)
	pe.Version, _ = strconv.ParseInt(m["version"], 10, 64)
	if w, err := strconv.Atoi(m["worker"]); err == nil {
		pe.Worker = w
	}
	if ws := m["workers"]; ws != "" {
		for _, s := range strings.Split(ws, ",") {
			if w, err := strconv.Atoi(s); err == nil {
				pe.Workers = append(pe.Workers, w)
			}
		}
	}
	return pe
}
