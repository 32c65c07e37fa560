#!/usr/bin/env bash
# The GPU checks of the CUDA backend, for a machine that has a GPU but no Go:
# build the test binaries where Go is, carry them over, run them there.
#
#   scripts/gpu-check.sh build DIR      # here: test binaries + logitpair, xz-compressed, into DIR
#   scripts/gpu-check.sh run DIR OUT    # on the GPU machine: every test on the GPU, then scripts/bench-gpu.sh
#
# The binaries link OpenBLAS statically (the GPU machine need not have it) but
# glibc dynamically (the CUDA backend dlopens the driver, NVRTC and cuBLAS).
# `run` sets LOGITPAIR_REQUIRE_CUDA=1, so a GPU that is missing or whose
# backend does not open fails the tests instead of skipping them, and writes
# each package's verbose log and a summary to OUT.
set -euo pipefail
cd "$(dirname "$0")/.."

# Packages whose tests run on the CUDA backend when a GPU is usable
# (pkg/tensor/cuda directly, the others through nntest.Backends).
PKGS=(tensor/cuda nn models objective attack train eval strong)

case "${1:-}" in
build)
	dir=${2:?usage: gpu-check.sh build DIR}
	export PATH="$PATH:/usr/local/go/bin"
	mkdir -p "$dir"
	libdir=$(dirname "$(find /usr/lib -name libopenblas.a -path '*openblas-pthread*' | head -1)")
	[ -n "$libdir" ] || { echo "gpu-check: libopenblas.a not found (libopenblas-dev)" >&2; exit 1; }
	export CGO_ENABLED=1 CGO_LDFLAGS="-L$libdir -l:libopenblas.a -lm -lpthread"
	for p in "${PKGS[@]}"; do
		name=${p//\//-}
		go test -c -ldflags='-s -w' -o "$dir/$name.test" "./pkg/$p"
	done
	go build -ldflags='-s -w' -o "$dir/logitpair" ./cmd/logitpair
	rm -f "$dir"/*.xz
	xz -T0 -6 "$dir"/*.test "$dir/logitpair"
	du -sh "$dir"
	;;
run)
	dir=${2:?usage: gpu-check.sh run DIR OUT} out=${3:?usage: gpu-check.sh run DIR OUT}
	mkdir -p "$out" /tmp/lp-gpu
	for f in "$dir"/*.xz; do xz -dc "$f" >"/tmp/lp-gpu/$(basename "$f" .xz)"; done
	chmod +x /tmp/lp-gpu/*
	root=$(pwd)
	# NVRTC and cuBLAS outside the loader's and the backend's search (a
	# toolkit or a Python environment's NVIDIA wheels): put their folders on
	# LD_LIBRARY_PATH.
	if ! LOGITPAIR_CUDA_PROBE=new /tmp/lp-gpu/tensor-cuda.test 2>&1 | grep -q '^ok'; then
		extra=$(find /usr/local /opt /usr/lib -xdev \( -name 'libnvrtc.so.1[1-3]*' -o -name 'libcublas.so.1[1-3]*' \) 2>/dev/null | xargs -r -n1 dirname | sort -u | paste -sd:)
		echo "the backend does not open with the default search; adding to LD_LIBRARY_PATH: $extra"
		export LD_LIBRARY_PATH="$extra${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
	fi
	{
		nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
		echo "probe: $(LOGITPAIR_CUDA_PROBE=new /tmp/lp-gpu/tensor-cuda.test 2>&1)"
	} | tee "$out/env.txt"
	export LOGITPAIR_REQUIRE_CUDA=1 LOGITPAIR_CUDA_NO_FAKE=1
	status=0
	: >"$out/summary.txt"
	for p in "${PKGS[@]}"; do
		name=${p//\//-}
		t0=$(date +%s)
		rc=0
		(cd "$root/pkg/$p" && timeout "${GPU_CHECK_TIMEOUT:-300}" "/tmp/lp-gpu/$name.test" -test.v -test.count=1 ${GPU_CHECK_SHORT:+-test.short} ${GPU_CHECK_RUN:+-test.run "$GPU_CHECK_RUN"}) >"$out/$name.log" 2>&1 || rc=$?
		line="$p: rc $rc in $(($(date +%s) - t0)) s; $(grep -c -- '^--- PASS\|^    --- PASS' "$out/$name.log" || true) passed, $(grep -c -- '--- FAIL' "$out/$name.log" || true) failed, $(grep -c -- '--- SKIP' "$out/$name.log" || true) skipped"
		echo "$line" | tee -a "$out/summary.txt"
		[ "$rc" = 0 ] || { status=1; grep -B2 -A12 -- '--- FAIL\|^panic\|^FAIL' "$out/$name.log" | head -60; }
	done
	if [ -z "${GPU_CHECK_NO_BENCH:-}" ]; then
		LOGITPAIR=/tmp/lp-gpu/logitpair bash scripts/bench-gpu.sh --rounds "${GPU_BENCH_ROUNDS:-3}" --out /tmp/lp-gpu/bench | tee "$out/bench.txt" || status=1
		cp /tmp/lp-gpu/bench/summary.json "$out/bench.json" 2>/dev/null || true
	fi
	exit $status
	;;
*)
	echo "usage: gpu-check.sh build DIR | run DIR OUT" >&2
	exit 2
	;;
esac
