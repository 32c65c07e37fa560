#!/usr/bin/env bash
# Runs the MNIST reproductions side by side on one machine with room for
# several jobs (a GPU, or many cores): the five objectives of
# scripts/repro-mnist.sh under the strong suite, each its own process, and
# scripts/repro-transfer.sh on MNIST as soon as the plain, M-PGD and ALP models
# it reuses have finished training. Every job keeps the budget and settings of
# its script, so the results are the same as running them one after another.
#
#   scripts/repro-parallel.sh [--steps N] [--restarts R] [--out DIR]
#
# The runs land where the two scripts put them by default (runs/repro-mnist,
# and DIR/repro-transfer; DIR defaults to runs), the logs in DIR/logs/.
# LOGITPAIR names a prebuilt binary (a machine without Go); training and
# evaluation use --device auto (a CUDA GPU when one is found). Not part of
# `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
steps=1000 restarts=5 out=runs
while [ $# -gt 0 ]; do
	case "$1" in
	--steps) steps=$2; shift 2 ;;
	--restarts) restarts=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	*) echo "unknown argument $1" >&2; exit 2 ;;
	esac
done
mkdir -p "$out/logs" bin
if [ -z "${LOGITPAIR:-}" ]; then
	export PATH="$PATH:/usr/local/go/bin"
	go build -o bin/logitpair ./cmd/logitpair
	export LOGITPAIR=bin/logitpair
fi
"$LOGITPAIR" data fetch mnist --dir data/mnist
declare -A pid=()
for obj in plain mpgd alp clp logit-squeeze; do
	bash scripts/repro-mnist.sh "$obj" --steps "$steps" --suite strong --restarts "$restarts" --out runs/repro-mnist \
		>"$out/logs/repro-mnist-$obj.log" 2>&1 &
	pid[$obj]=$!
done
# repro-transfer reuses plain, mpgd and alp (from runs/repro-mnist) once their
# training is done; it never waits for a run still training (it would exit 3).
for obj in plain mpgd alp; do
	until grep -qs "\"step\": *$steps\b" "runs/repro-mnist/$obj/latest.json"; do
		if ! kill -0 "${pid[$obj]}" 2>/dev/null; then
			echo "repro-parallel: $obj stopped before finishing its training; see $out/logs/repro-mnist-$obj.log" >&2
			break
		fi
		sleep 2
	done
done
status=0
bash scripts/repro-transfer.sh --dataset mnist --steps "$steps" --out "$out/repro-transfer" \
	>"$out/logs/repro-transfer.log" 2>&1 || status=$?
for p in "${pid[@]}"; do wait "$p" || status=$?; done
for obj in plain mpgd alp clp logit-squeeze; do
	tail -n 3 "$out/logs/repro-mnist-$obj.log"
done
tail -n 20 "$out/logs/repro-transfer.log"
exit $status
