#!/usr/bin/env bash
# The paper's layout on one machine (issue 12, item 6), recorded in
# docs/BENCHMARKS.md: `logitpair cluster local --workers 53 --backups 3
# --ps 17` training madry-mnist (ALP) on MNIST for a few steps. Prints
#   - the time from the launch to the first committed step (step 0 in the
#     coordinator's log), and
#   - the peak over the run of the memory of all its processes together,
#     sampled every second: the sum of VmRSS (/proc/PID/status) and the sum
#     of Pss (/proc/PID/smaps_rollup; pages shared between the processes,
#     e.g. the executable's, counted once),
# with the machine and its load average. A benchmark, not a test: it takes
# minutes and GBs; run it on a quiet machine.
#
#   scripts/bench-paper-layout.sh
#
# Environment (defaults in brackets): WORKERS [53], BACKUPS [3], PS [17],
# STEPS [3], BATCH [8] clean examples per worker and step (the memory of a
# worker grows with it), ATTACK_STEPS [2] PGD iterations (a light first
# step, so that the time measured is mostly the start), TIMEOUT [900]
# seconds for the whole run, OUT [a temporary folder, removed].
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
workers=${WORKERS:-53} backups=${BACKUPS:-3} ps=${PS:-17} steps=${STEPS:-3}
batch=${BATCH:-8} attack_steps=${ATTACK_STEPS:-2} timeout_s=${TIMEOUT:-900}

mkdir -p bin
go build -o bin/logitpair ./cmd/logitpair
bin/logitpair data fetch mnist --dir data/mnist >/dev/null

if [ -n "${OUT:-}" ]; then
	out=$OUT
	rm -rf "$out"
	mkdir -p "$out"
else
	out=$(mktemp -d)
fi
# Whatever ends this script ends the cluster it started (before its folder
# is removed).
launcher=""
cleanup() {
	if [ -n "$launcher" ] && kill -0 "$launcher" 2>/dev/null; then
		kill "$launcher" 2>/dev/null || true
		wait "$launcher" 2>/dev/null || true
	fi
	if [ -z "${OUT:-}" ]; then rm -rf "$out"; fi
}
trap cleanup EXIT
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GB"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "layout: $workers workers ($backups backups), $ps shards; madry-mnist, ALP, batch $batch per worker, PGD-$attack_steps, $steps steps"

t0=$(date +%s.%N)
timeout "$timeout_s" bin/logitpair cluster local --workers "$workers" --backups "$backups" --ps "$ps" \
	--model madry-mnist --dataset mnist --data-dir data/mnist --objective alp --batch "$batch" \
	--attack-steps "$attack_steps" --step-size 0.1 --steps "$steps" --log-every 1 --checkpoint-every 0 \
	--out "$out/run" >"$out/launcher.log" 2>&1 &
launcher=$!

# tree PID: "pid role" for PID and every process below it (timeout →
# cluster local → the cluster's processes), from one `ps` (a loop over 70
# processes forking per process falls behind on a loaded machine). role is
# logitpair's subcommand (coordinator, paramserver, worker; cluster for the
# launcher) or "other".
tree() {
	ps -e -o pid=,ppid=,args= | awk -v root="$1" '
		{
			parent[$1] = $2
			role[$1] = "other"
			if ($3 ~ /(^|\/)logitpair$/) role[$1] = $4
		}
		END {
			in_tree[root] = 1
			do {
				grew = 0
				for (p in parent) if (!(p in in_tree) && (parent[p] in in_tree)) { in_tree[p] = 1; grew = 1 }
			} while (grew)
			for (p in in_tree) if (p in parent) print p, role[p]
		}'
}

# sample PIDROLES: one line per role and one for "all": role, processes,
# sum of VmRSS (kB), sum of Pss (kB). The files are read by grep, which skips
# those of a process that has just exited (awk given such a file stops; grep
# then exits 2, which must not end this script under set -e and pipefail).
sample() {
	local roles=$1 pids
	pids=$(cut -d' ' -f1 <<<"$roles")
	{
		echo "$roles"
		# shellcheck disable=SC2046
		grep -H '^VmRSS:' $(printf '/proc/%s/status ' $pids) 2>/dev/null || true
		# shellcheck disable=SC2046
		grep -H '^Pss:' $(printf '/proc/%s/smaps_rollup ' $pids) 2>/dev/null || true
	} | awk '
		NF == 2 && $1 ~ /^[0-9]+$/ { role[$1] = $2; n[$2]++; n["all"]++; next }
		{
			split($1, path, "/")
			r = role[path[3]]
			if ($1 ~ /VmRSS:$/) { rss[r] += $2; rss["all"] += $2 } else { pss[r] += $2; pss["all"] += $2 }
		}
		END { for (r in n) print r, n[r], rss[r] + 0, pss[r] + 0 }'
}

# Sample the whole tree every second until it exits: the peak sums of VmRSS
# and of Pss, and the split by role at the peak of Pss.
peak_rss=0 peak_pss=0 peak_procs=0 peak_split="" load_mid=""
while kill -0 "$launcher" 2>/dev/null; do
	s=$(sample "$(tree "$launcher")") || s=""
	read -r _ n rss pss < <(grep '^all ' <<<"$s" || echo "all 0 0 0")
	((rss > peak_rss)) && peak_rss=$rss
	((pss > peak_pss)) && peak_pss=$pss && peak_split=$s
	((n > peak_procs)) && peak_procs=$n
	[ -z "$load_mid" ] && grep -q '"step": 0,' "$out/run/logs/coordinator.log" 2>/dev/null && load_mid=$(cut -d' ' -f1-3 /proc/loadavg)
	sleep 1
done
rc=0
wait "$launcher" || rc=$?
echo "load average at the first step: ${load_mid:-?}; after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$rc" != 0 ]; then
	echo "cluster local exited $rc:"
	tail -20 "$out/launcher.log"
	exit "$rc"
fi
first=$(grep -m1 'step committed.*"step": 0,' "$out/run/logs/coordinator.log" | cut -f1)
first_s=$(python3 -c '
import sys, datetime
t = datetime.datetime.fromisoformat(sys.argv[1].replace("Z", "+00:00")).timestamp()
print(f"{t - float(sys.argv[2]):.1f}")' "$first" "$t0")
grep -E '^(started [0-9]|done:|note:)' "$out/launcher.log" || true
echo "first committed step: ${first_s} s after the launch"
echo "peak memory of the $peak_procs processes: $((peak_rss / 1024)) MB (sum of VmRSS), $((peak_pss / 1024)) MB (sum of Pss)"
echo "at the peak of Pss, by role (processes, sum of VmRSS, sum of Pss, Pss per process):"
grep -v '^all ' <<<"$peak_split" | sort | awk '{ printf "  %-12s %3d  %6d MB  %6d MB  %5.1f MB\n", $1, $2, $3 / 1024, $4 / 1024, $4 / 1024 / $2 }'

