#!/usr/bin/env bash
# Builds logitpair/worker-gpu:TAG (deploy/docker/Dockerfile.gpu) on
# logitpair/debian-base:bookworm (scripts/gpu-base-image.sh). The worker is
# built here, on the host: linked dynamically against glibc (the CUDA
# libraries are dlopen'ed at run time) with OpenBLAS linked in statically, so
# the image needs nothing from Debian but libc. Usage:
#
#	OPENBLAS_LIBDIR=DIR deploy/docker/build-gpu.sh [--tag TAG] [--ld-library-path PATH]
#
# OPENBLAS_LIBDIR is the directory of libopenblas.a (the Makefile passes the
# one it found for `make static`).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
case ":$PATH:" in
*:/usr/local/go/bin:*) ;;
*) export PATH="$PATH:/usr/local/go/bin" ;;
esac

tag=dev
ldpath=/usr/local/nvidia/lib64:/usr/local/cuda/lib64
while [ $# -gt 0 ]; do
	case "$1" in
	--tag) tag="${2:?--tag needs a value}"; shift 2 ;;
	--ld-library-path) ldpath="${2:?--ld-library-path needs a value}"; shift 2 ;;
	*) echo "build-gpu.sh: unknown argument $1 (usage: build-gpu.sh [--tag TAG] [--ld-library-path PATH])" >&2; exit 2 ;;
	esac
done
uid="${LOGITPAIR_IMAGE_UID:-65532}"
if ! [[ "$uid" =~ ^[1-9][0-9]*$ ]]; then
	echo "build-gpu.sh: LOGITPAIR_IMAGE_UID must be a non-zero numeric user id, got '$uid'" >&2
	exit 2
fi
base=logitpair/debian-base:bookworm
if ! docker image inspect "$base" >/dev/null 2>&1; then
	echo "build-gpu.sh: $base is missing: run scripts/gpu-base-image.sh first" >&2
	exit 1
fi
libdir="${OPENBLAS_LIBDIR:-}"
if [ -z "$libdir" ] || [ ! -f "$libdir/libopenblas.a" ]; then
	echo "build-gpu.sh: OPENBLAS_LIBDIR must name the directory of libopenblas.a (Debian: libopenblas-pthread-dev), got '$libdir'" >&2
	exit 1
fi

start=$SECONDS
mkdir -p bin/gpu
CGO_ENABLED=1 CGO_LDFLAGS="-L$libdir -l:libopenblas.a -lm -lpthread" go build -o bin/gpu/worker ./cmd/worker
# Only glibc (and the kernel's vDSO) may be dynamic: anything else would
# have to be installed in the image.
if other="$(ldd bin/gpu/worker | grep -Ev '^\s*(linux-vdso|/lib64/ld-linux|lib(c|m|pthread|dl|rt|resolv)\.so)' )"; then
	echo "build-gpu.sh: bin/gpu/worker needs libraries beyond glibc:" >&2
	echo "$other" >&2
	exit 1
fi

ctx=bin/images/worker-gpu
rm -rf "$ctx"
mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/data"
ln bin/gpu/worker "$ctx/rootfs/usr/local/bin/worker" 2>/dev/null || cp bin/gpu/worker "$ctx/rootfs/usr/local/bin/worker"
if ! out="$(docker build --quiet -f deploy/docker/Dockerfile.gpu --build-arg "UID=$uid" --build-arg "LD_LIBRARY_PATH=$ldpath" \
	-t "logitpair/worker-gpu:$tag" "$ctx" 2>&1)"; then
	echo "$out" >&2
	echo "build-gpu.sh: building logitpair/worker-gpu:$tag failed" >&2
	exit 1
fi
echo "built logitpair/worker-gpu:$tag in $((SECONDS - start))s ($(docker image inspect -f '{{.Size}}' "logitpair/worker-gpu:$tag") bytes; LD_LIBRARY_PATH=$ldpath)"
