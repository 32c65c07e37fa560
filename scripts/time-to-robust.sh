#!/usr/bin/env bash
# Time to a robust model (issue 14's benchmark): trains one recipe, then runs
# the strong suite on the first MNIST test images, and says how far the result
# is from the target. Not part of `make test`.
#
#   scripts/time-to-robust.sh CONFIG [--out DIR] [--examples N] [--restarts R]
#                             [--no-checks] [--label NAME] [-- TRAIN FLAGS...]
#
# CONFIG is a training configuration (configs/*.yaml); flags after "--" go to
# `logitpair train` and override it (e.g. -- --steps 3000). The run goes to
# DIR (default runs/time-to-robust/<config name>); running the script again
# resumes the training where it stopped and evaluates again.
#
# Evaluation: `logitpair eval --suite strong` on the first N (default 1,000)
# test images at ε = 0.3: APGD-CE and APGD-DLR (100 steps × R restarts,
# default the suite's 10), targeted APGD, Square, then the masking checks
# (--no-checks skips those; the robust accuracy does not depend on them). Its
# report lands in DIR/report/, the result in DIR/eval.json.
#
# Target: ≥ 89% robust accuracy under the strong suite with ≥ 98% clean
# accuracy after ≤ 60 minutes of training (the training wall time recorded in
# the checkpoint, resumes included). The last line is one JSON object (also
# appended to runs/time-to-robust/results.jsonl) that docs/RESULTS.md records.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }
[ $# -ge 1 ] || usage
config=$1; shift
[ -f "$config" ] || { echo "time-to-robust: no configuration file $config (see configs/)" >&2; exit 2; }
name=$(basename "$config"); name=${name%.*}
out= examples=1000 restarts=10 checks=() label=$name trainflags=()
while [ $# -gt 0 ]; do
	case "$1" in
	--out) out=$2; shift 2 ;;
	--examples) examples=$2; shift 2 ;;
	--restarts) restarts=$2; shift 2 ;;
	--no-checks) checks=(--no-checks); shift ;;
	--label) label=$2; shift 2 ;;
	--) shift; trainflags=("$@"); break ;;
	-h|--help) usage ;;
	*) echo "time-to-robust: unknown option $1" >&2; usage ;;
	esac
done
out=${out:-runs/time-to-robust/$name}
mkdir -p bin "$out"
# LOGITPAIR names a prebuilt binary (e.g. on a machine without Go).
if [ -n "${LOGITPAIR:-}" ]; then
	ln -sf "$(realpath "$LOGITPAIR")" bin/logitpair
else
	go build -o bin/logitpair ./cmd/logitpair
fi
bin/logitpair data fetch mnist --dir data/mnist

resume=()
[ -f "$out/latest.json" ] && resume=(--resume)
bin/logitpair train --config "$config" --out "$out" "${resume[@]}" "${trainflags[@]}" 2>&1 | tee -a "$out/train.log"

model=$(sed -n 's/.*"model": *"\([^"]*\)".*/\1/p' "$out/latest.json")
bin/logitpair eval --suite strong --checkpoint "$out/$model" --dataset mnist --data-dir data/mnist \
	--examples "$examples" --eps 0.3 --steps 100 --restarts "$restarts" "${checks[@]}" \
	--report "$out/report" --json "$out/eval.json" 2>&1 | tee "$out/eval.txt"

# The few numbers the summary needs, from the pretty-printed eval JSON (the
# top-level keys come before the stages; the first match is the top-level one).
field() { grep -m1 -o "\"$1\": *[0-9.eE+-]*" | sed 's/.*: *//'; }
clean=$(field clean_accuracy <"$out/eval.json") robust=$(field robust_accuracy <"$out/eval.json")
compute=$(sed -n '/"compute": {/,/}/p' "$out/eval.json")
wall=$(field wall_seconds <<<"$compute") passes=$(field passes_per_example <<<"$compute") steps=$(field steps <<<"$compute")
verdict=$(awk -v c="$clean" -v r="$robust" -v w="$wall" 'BEGIN {
	ok = (r >= 0.89 && c >= 0.98 && w != "" && w <= 3600)
	printf "%s (robust %.1f%% vs 89%%, clean %.1f%% vs 98%%, training %.1f min vs 60)",
		ok ? "target met" : "target missed", 100*r, 100*c, w/60 }')
echo "time-to-robust: $label: $verdict"
line=$(printf '{"label":"%s","config":"%s","out":"%s","examples":%s,"restarts":%s,"steps":%s,"train_wall_seconds":%s,"passes_per_example":%s,"clean_accuracy":%s,"robust_accuracy":%s,"date":"%s"}' \
	"$label" "$config" "$out" "$examples" "$restarts" "${steps:-null}" "${wall:-null}" "${passes:-null}" "$clean" "$robust" "$(date -u +%FT%TZ)")
mkdir -p runs/time-to-robust
echo "$line" >>runs/time-to-robust/results.jsonl
echo "$line"
