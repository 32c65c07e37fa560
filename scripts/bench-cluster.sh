#!/usr/bin/env bash
# Cluster benchmarks (issue 5), recorded in docs/BENCHMARKS.md:
#  (i)   push + pull throughput of one worker on loopback, for madry-mnist's
#        and resnet-v2-50's parameter vectors, over gRPC with mutual TLS and
#        in plaintext beside raw TCP and a memory copy of the same bytes,
#        with each one's ratio to raw TCP (go test -bench PushPullLoopback;
#        issue 13);
#  (ii)  samples/s of a 2-worker cluster (separate processes on loopback,
#        1 thread each) beside `logitpair train` with 2 threads, same step;
#  (iii) 3 workers, one slowed to 3× its step time: step time with b = 1 and
#        b = 0 beside no straggler (go test -bench Straggler).
#
#   scripts/bench-cluster.sh [--steps N]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
steps=40
[ "${1:-}" = --steps ] && steps=$2
echo "== (i) push + pull on loopback (MB/s of payload; ratio to raw TCP measured right after each) =="
go test -run XXX -bench PushPullLoopback -benchtime 10x ./pkg/rpc/ | awk '
/^BenchmarkPushPullLoopback\// {
	name = $1
	sub(/^BenchmarkPushPullLoopback\//, "", name)
	sub(/-[0-9]+$/, "", name)
	mbs = ratio = cpu = ""
	for (i = 3; i <= NF; i++) {
		if ($i == "MB/s") mbs = $(i - 1)
		if ($i == "x-raw-tcp") ratio = $(i - 1)
		if ($i == "cpu-ms/op") cpu = $(i - 1)
	}
	printf "%-26s %9s MB/s  %8s CPU ms/round  %s\n", name, mbs, cpu, (ratio == "" ? "" : sprintf("%.2f x raw TCP", ratio))
}
/^(FAIL|panic|---)/ { print; bad = 1 }
END { exit bad }'
echo "== (iii) straggler =="
go test -run XXX -bench Straggler -benchtime 1x ./pkg/cluster/ | grep Benchmark
echo "== (ii) 2-worker cluster vs local training (ALP, madry-mnist, batch 50 per worker, PGD-10) =="
mkdir -p bin
go build -o bin/logitpair ./cmd/logitpair
bin/logitpair data fetch mnist --dir data/mnist >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
args=(--dataset mnist --data-dir data/mnist --objective alp --attack-steps 10 --step-size 0.03 --batch 50 --steps "$steps" --log-every 1 --checkpoint-every 0)
bin/logitpair train "${args[@]}" --threads 2 --out "$tmp/local" >"$tmp/local.log"
# Local: the trainer's own samples/s over the whole run (its closing line; the
# step lines give the rate of the recent steps).
local_sps=$(grep '^trained steps ' "$tmp/local.log" | tail -1 | sed 's/.*steps\/s, \([0-9.]*\) samples\/s.*/\1/')
bin/logitpair cluster local --workers 2 --backups 0 --ps 1 "${args[@]}" --out "$tmp/cluster" >/dev/null
# Cluster: from the commit of step 0 to the commit of the last step.
first=$(grep -m1 '"step": 0,' "$tmp/cluster/logs/coordinator.log" | cut -f1)
last=$(grep "step committed" "$tmp/cluster/logs/coordinator.log" | tail -1 | cut -f1)
cluster_sps=$(python3 - "$first" "$last" "$steps" <<'PY' 2>/dev/null || echo "?"
import sys, datetime
f = lambda s: datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
a, b, n = f(sys.argv[1]), f(sys.argv[2]), int(sys.argv[3])
print(f"{(n - 1) * 2 * 50 / (b - a).total_seconds():.1f}")
PY
)
echo "local train (2 threads): $local_sps samples/s"
echo "2-worker cluster (steps 1..$((steps-1)), 2 × 50 samples per step): $cluster_sps samples/s"
