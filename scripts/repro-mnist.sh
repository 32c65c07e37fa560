#!/usr/bin/env bash
# Reproduces the paper's MNIST comparison (Table 1: M-PGD vs ALP) on this
# machine's budget, one model at a time, resumably. Not part of `make test`.
#
#   scripts/repro-mnist.sh [OBJECTIVE...] [--steps N] [--out DIR] [--restarts R] [--suite standard|strong]
#
# OBJECTIVE defaults to "mpgd alp"; plain, clp and logit-squeeze are accepted
# too (issue 6's full comparison). Each is trained with the same budget and
# settings (madry-mnist, batch 50 clean (+ 50 adversarial for mpgd/alp), PGD-40
# ε 0.3 α 0.01 from a random start on the true label, Adam 1e-3 with a cosine
# decay, seed 1; ALP, CLP and logit squeezing with λ = 0.5 on the released
# code's MSE scale; CLP and logit squeezing on inputs with Gaussian noise
# σ = 0.5), checkpointed every 250 steps (re-running the script resumes where it
# stopped), then evaluated on the first 1,000 test images: with the standard
# suite, PGD-100 (α 0.01) × R random restarts; with --suite strong, the strong
# suite (APGD-CE/DLR × R restarts, targeted APGD, Square, masking checks; its
# report in DIR/OBJECTIVE/report/). Results land in
# DIR/OBJECTIVE/{eval.json,eval.txt,wall_seconds}; the last lines printed are
# the summary that docs/RESULTS.md records.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
steps=4000 out=runs/repro-mnist restarts=5 suite=standard objectives=()
while [ $# -gt 0 ]; do
	case "$1" in
	--steps) steps=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--restarts) restarts=$2; shift 2 ;;
	--suite) suite=$2; shift 2 ;;
	-*) echo "unknown option $1" >&2; exit 2 ;;
	*) objectives+=("$1"); shift ;;
	esac
done
[ ${#objectives[@]} -gt 0 ] || objectives=(mpgd alp)
mkdir -p bin "$out"
# LOGITPAIR names a prebuilt binary (e.g. on a GPU machine without Go).
if [ -n "${LOGITPAIR:-}" ]; then
	ln -sf "$(realpath "$LOGITPAIR")" bin/logitpair
else
	go build -o bin/logitpair ./cmd/logitpair
fi
bin/logitpair data fetch mnist --dir data/mnist
for obj in "${objectives[@]}"; do
	dir="$out/$obj"
	mkdir -p "$dir"
	resume=()
	[ -f "$dir/latest.json" ] && resume=(--resume)
	start=$(date +%s)
	bin/logitpair train --dataset mnist --data-dir data/mnist --model madry-mnist \
		--objective "$obj" --pair-weight 0.5 --noise-std 0.5 --eps 0.3 --step-size 0.01 --attack-steps 40 \
		--batch 50 --steps "$steps" --optimizer adam --lr 1e-3 --lr-schedule "cosine:$steps:0.01" \
		--seed 1 --checkpoint-every 250 --keep 2 --log-every 50 --out "$dir" "${resume[@]}" | tee -a "$dir/train.log"
	prev=$(cat "$dir/wall_seconds" 2>/dev/null || echo 0)
	echo $((prev + $(date +%s) - start)) >"$dir/wall_seconds"
	model=$(sed -n 's/.*"model": *"\([^"]*\)".*/\1/p' "$dir/latest.json")
	if [ "$suite" = strong ]; then
		bin/logitpair eval --suite strong --checkpoint "$dir/$model" --dataset mnist --data-dir data/mnist --examples 1000 \
			--eps 0.3 --steps 100 --restarts "$restarts" --report "$dir/report" --json "$dir/eval.json" | tee "$dir/eval.txt"
	else
		bin/logitpair eval --checkpoint "$dir/$model" --dataset mnist --data-dir data/mnist --examples 1000 \
			--eps 0.3 --step-size 0.01 --steps 100 --restarts "$restarts" --target true --json "$dir/eval.json" | tee "$dir/eval.txt"
	fi
done
echo "== summary (budget: $steps steps each) =="
for obj in "${objectives[@]}"; do
	echo "$obj: $(cat "$out/$obj/eval.txt" | tr '\n' ' ') wall ${out}/$obj/wall_seconds=$(cat "$out/$obj/wall_seconds")s"
done
