package rpc

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/logitpair/logitpair/pkg/paramserver"
)

// TestErrorMapping: every paramserver kind maps to its code and comes back
// from the status as the same *paramserver.Error.
func TestErrorMapping(t *testing.T) {
	want := map[error]codes.Code{
		paramserver.ErrLength: codes.InvalidArgument, paramserver.ErrNonFinite: codes.InvalidArgument,
		paramserver.ErrUnknownWorker: codes.InvalidArgument, paramserver.ErrConflict: codes.InvalidArgument,
		paramserver.ErrBadSet: codes.InvalidArgument, paramserver.ErrStale: codes.FailedPrecondition,
		paramserver.ErrFuture: codes.FailedPrecondition, paramserver.ErrMissing: codes.FailedPrecondition,
		paramserver.ErrSetMismatch: codes.FailedPrecondition, paramserver.ErrRestore: codes.FailedPrecondition,
		paramserver.ErrClosed: codes.Unavailable, paramserver.ErrBadScale: codes.InvalidArgument,
	}
	if len(want) != len(kinds) {
		t.Fatalf("%d kinds mapped, %d expected", len(kinds), len(want))
	}
	for kind, code := range want {
		pe := &paramserver.Error{Op: "apply", Kind: kind, Shard: 3, Step: 41, Version: 42, Worker: 5, Workers: []int{1, 4}, Detail: "why"}
		wrapped := fmt.Errorf("shard 3: %w", pe)
		if c := Code(wrapped); c != code {
			t.Fatalf("%v: code %s, want %s", kind, c, code)
		}
		err := fromStatus(statusErr(wrapped))
		var got *paramserver.Error
		if !errors.Is(err, kind) || !errors.As(err, &got) || !reflect.DeepEqual(got, pe) {
			t.Fatalf("%v: round trip gave %v (%#v)", kind, err, got)
		}
		if status.Code(err) != code || err.Error() != "rpc error: code = "+code.String()+" desc = "+wrapped.Error() {
			t.Fatalf("%v: %q", kind, err)
		}
	}
	for _, tc := range []struct {
		err  error
		code codes.Code
		is   error
	}{
		{context.DeadlineExceeded, codes.DeadlineExceeded, context.DeadlineExceeded},
		{fmt.Errorf("pull: %w", context.Canceled), codes.Canceled, context.Canceled},
		{errors.New("disk full"), codes.Internal, nil},
		{&paramserver.Error{Kind: errors.New("optimizer overflow")}, codes.Internal, nil},
		{status.Error(codes.NotFound, "x"), codes.NotFound, nil},
	} {
		err := fromStatus(statusErr(tc.err))
		if status.Code(err) != tc.code || (tc.is != nil && !errors.Is(err, tc.is)) {
			t.Fatalf("%v: got %v", tc.err, err)
		}
	}
	if KindReason(paramserver.ErrStale) != "STALE" || KindReason(errors.New("x")) != "" {
		t.Fatal("KindReason")
	}
}
