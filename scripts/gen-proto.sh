#!/usr/bin/env bash
# Generate the Go code of the gRPC APIs (proto/**/*.proto → pkg/api/**).
#
#   scripts/gen-proto.sh            regenerate the committed files in pkg/api
#   scripts/gen-proto.sh --check    regenerate into a temporary directory and
#                                   compare with the committed files; exit 1 on
#                                   drift. Never writes inside the repository.
#
# protoc comes from PATH (Debian's protobuf-compiler; `make deps` installs it).
# Its version is written into every *.pb.go header, so it is pinned below
# (PROTOC_VERSION overrides). The plugins are the versions pinned as `tool`
# directives in go.mod, built with `go tool -n` (no network after
# `go mod download`, nothing installed into GOBIN):
#   protoc-gen-go       google.golang.org/protobuf/cmd/protoc-gen-go
#   protoc-gen-go-grpc  google.golang.org/grpc/cmd/protoc-gen-go-grpc
# Every path handed to protoc is relative to the repository root, so the
# output does not depend on where the checkout lives.
set -euo pipefail

PROTOC_VERSION="${PROTOC_VERSION:-3.21.12}"
MODULE=github.com/logitpair/logitpair

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$PATH:/usr/local/go/bin"
GO="${GO:-go}"

check=0
case "${1:-}" in
"") ;;
--check) check=1 ;;
*)
	echo "usage: $0 [--check]" >&2
	exit 2
	;;
esac

if ! command -v protoc >/dev/null 2>&1; then
	echo "gen-proto: protoc not found in PATH (Debian: apt-get install protobuf-compiler, or make deps)" >&2
	exit 1
fi
have="$(protoc --version | awk '{print $2}')"
if [ "$have" != "$PROTOC_VERSION" ]; then
	echo "gen-proto: protoc $have found, $PROTOC_VERSION expected: the version is written into the" >&2
	echo "gen-proto: generated headers. Use Debian bookworm's protobuf-compiler, or PROTOC_VERSION=$have." >&2
	exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Build the pinned plugins (go.mod's tool directives; read-only module graph).
plugin_go="$(GOFLAGS=-mod=readonly "$GO" tool -n protoc-gen-go)"
plugin_grpc="$(GOFLAGS=-mod=readonly "$GO" tool -n protoc-gen-go-grpc)"

mapfile -t protos < <(cd proto && find . -name '*.proto' | sed 's|^\./||' | LC_ALL=C sort)
if [ "${#protos[@]}" -eq 0 ]; then
	echo "gen-proto: no .proto files under proto/" >&2
	exit 1
fi

# Generate into $tmp/gen; module= strips the module path, so the files land
# at $tmp/gen/pkg/api/<service>/v1/.
mkdir -p "$tmp/gen"
protoc \
	--proto_path=proto \
	--plugin=protoc-gen-go="$plugin_go" \
	--plugin=protoc-gen-go-grpc="$plugin_grpc" \
	--go_out="$tmp/gen" --go_opt=module="$MODULE" \
	--go-grpc_out="$tmp/gen" --go-grpc_opt=module="$MODULE" \
	"${protos[@]}"

if [ "$check" = 1 ]; then
	# Copy the committed generated files next to the fresh ones and compare.
	mkdir -p "$tmp/committed"
	while IFS= read -r f; do
		mkdir -p "$tmp/committed/$(dirname "$f")"
		cp "$f" "$tmp/committed/$f"
	done < <(find pkg/api -name '*.pb.go' 2>/dev/null | LC_ALL=C sort)
	mkdir -p "$tmp/committed/pkg/api" "$tmp/gen/pkg/api"
	if ! diff -r "$tmp/committed/pkg/api" "$tmp/gen/pkg/api" >"$tmp/diff"; then
		cat "$tmp/diff" >&2
		echo >&2
		echo "proto-check: the generated code in pkg/api does not match proto/ (diff above:" >&2
		echo "proto-check: committed vs regenerated). Run 'make proto' and commit the result." >&2
		exit 1
	fi
	echo "proto-check: pkg/api is up to date with proto/ (${#protos[@]} files, protoc $have)"
	exit 0
fi

# Replace the committed generated files (removing those of deleted protos).
find pkg/api -name '*.pb.go' -delete 2>/dev/null || true
(cd "$tmp/gen" && find pkg -name '*.pb.go') | while IFS= read -r f; do
	mkdir -p "$(dirname "$f")"
	cp "$tmp/gen/$f" "$f"
	echo "gen-proto: wrote $f"
done
