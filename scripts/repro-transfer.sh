#!/usr/bin/env bash
# Reproduces the paper's transfer comparison (Table 4 and its finding that
# black-box attacks crafted on a multi-step-adversarially-trained model — its
# ALP model — cut ensemble adversarial training's accuracy from 66.6% to 47.1%)
# on MNIST and Fashion-MNIST at this machine's budget, one model at a time,
# resumably. Not part of `make test`.
#
#   scripts/repro-transfer.sh [--dataset mnist|fashion-mnist|all] [--steps N] [--out DIR]
#                             [--examples N] [--single-step stepll|fgsm] [--threads N]
#
# For each dataset, every model is trained with the same budget and settings as
# scripts/repro-mnist.sh (madry-mnist, batch 50 clean + 50 adversarial, Adam
# 1e-3 with a cosine decay over N steps, seed 1, checkpoints every 250 steps:
# re-running the script resumes where it stopped; PGD-40 from a random start at
# ε = 0.3, α = 0.01 on MNIST and ε = 0.1, α = 0.01 on Fashion-MNIST):
#
#   plain         the undefended source model (seed 1)
#   static-a, -b  ensemble-adv's fixed models: plain, half width with seed 2 and
#                 full width with seed 3 (Tramèr et al. used other architectures)
#   ensemble-adv  Tramèr et al. (2018): single-step examples (--single-step,
#                 default stepll) crafted round-robin on the model, static-a and
#                 static-b
#   single-step   Kurakin et al. (2017a): step-LL with a random ε per example
#   mpgd, alp     multi-step adversarial training (ALP with λ = 0.5)
#
# On MNIST, plain, mpgd and alp are taken from runs/repro-mnist/ when a
# finished run there has exactly this budget and these settings (its model
# file's train_config says so); one still training there is waited for, never
# written to (the script says so and exits 3: re-run it later). Everything else
# lands in DIR/DATASET/MODEL/.
#
# Each defended model (ensemble-adv, single-step, mpgd, alp) is then evaluated
# on the first N test images (default 1000) white-box and under transfer from
# plain, mpgd and alp (not from itself) with PGD-40 (α = ε/30, random start,
# predicted label), FGSM and step-LL at ε (DIR/DATASET/eval/MODEL.{json,txt});
# the last lines printed are `logitpair report --source` tables, one per
# dataset: accuracy per source, the lowest over the three attacks.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
steps=1000 out=runs/repro-transfer examples=1000 single=stepll threads=0 datasets=(mnist fashion-mnist)
while [ $# -gt 0 ]; do
	case "$1" in
	--steps) steps=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--examples) examples=$2; shift 2 ;;
	--single-step) single=$2; shift 2 ;;
	--threads) threads=$2; shift 2 ;;
	--dataset)
		case "$2" in
		all) datasets=(mnist fashion-mnist) ;;
		mnist | fashion-mnist) datasets=("$2") ;;
		*) echo "--dataset $2: want mnist, fashion-mnist or all" >&2; exit 2 ;;
		esac
		shift 2 ;;
	*) echo "unknown option $1" >&2; exit 2 ;;
	esac
done
mkdir -p bin "$out"
# LOGITPAIR names a prebuilt binary (e.g. on a GPU machine without Go).
if [ -n "${LOGITPAIR:-}" ]; then
	ln -sf "$(realpath "$LOGITPAIR")" bin/logitpair
else
	go build -o bin/logitpair ./cmd/logitpair
fi
incomplete=()

# train_config FILE prints the training configuration (JSON) stored in a model
# file's safetensors metadata.
train_config() {
	local n
	n=$(od -An -t u8 -N 8 "$1" | tr -d ' ')
	head -c $((8 + n)) "$1" | tail -c "$n" | grep -o '"train_config":"\([^"\\]\|\\.\)*"' |
		sed 's/^"train_config":"//; s/"$//; s/\\"/"/g'
}

# model_of DIR prints DIR's newest model file from its latest.json.
model_of() { echo "$1/$(sed -n 's/.*"model": *"\([^"]*\)".*/\1/p' "$1/latest.json")"; }

# step_of DIR prints the step of DIR's newest checkpoint (0 if none).
step_of() { sed -n 's/.*"step": *\([0-9]*\).*/\1/p' "$1/latest.json" 2>/dev/null || echo 0; }

for ds in "${datasets[@]}"; do
	case "$ds" in
	mnist) eps=0.3 eps255=76.5 pgdstep=2.55 ;;
	fashion-mnist) eps=0.1 eps255=25.5 pgdstep=0.85 ;;
	esac
	if ! bin/logitpair data fetch "$ds" --dir "data/$ds"; then
		echo "repro-transfer: no $ds (on Debian: apt-get install dataset-$ds); skipping it" >&2
		incomplete+=("$ds: dataset missing")
		continue
	fi
	base=(--dataset "$ds" --data-dir "data/$ds" --model madry-mnist --pair-weight 0.5 --noise-std 0.5
		--eps "$eps" --step-size 0.01 --attack-steps 40 --batch 50 --steps "$steps" --optimizer adam --lr 1e-3
		--lr-schedule "cosine:$steps:0.01" --checkpoint-every 250 --keep 2 --log-every 50 --threads "$threads")
	declare -A model=()

	# reusable OBJ: runs/repro-mnist/OBJ holds a finished run of this budget
	# (prints its model file), or one still in progress (returns 2), or
	# nothing usable (returns 1).
	reusable() {
		local dir=runs/repro-mnist/$1 cfg want
		[ "$ds" = mnist ] && [ -d "$dir" ] || return 1
		if [ -f "$dir/latest.json" ]; then
			cfg=$(train_config "$(model_of "$dir")")
			for want in "\"dataset\":\"mnist\"" "\"model\":\"madry-mnist\"" "\"objective\":\"$1\"" "\"steps\":$steps," \
				"\"eps\":0.3," "\"step-size\":0.01," "\"attack-steps\":40," "\"batch\":50," "\"lr\":0.001," \
				"\"lr-schedule\":\"cosine:$steps:0.01\"" "\"seed\":1," "\"pair-weight\":0.5," "\"model-config\"" ; do
				if [ "$want" = '"model-config"' ]; then
					! grep -q "$want" <<<"$cfg" || return 1 # default width only
				elif ! grep -qF "$want" <<<"$cfg"; then
					return 1
				fi
			done
			if [ "$(step_of "$dir")" = "$steps" ]; then
				model_of "$dir"
				return 0
			fi
			return 2
		fi
		# No checkpoint yet: a run of this budget has just started.
		head -1 "$dir/train.log" 2>/dev/null | grep -q "with $1 from step 0 to $steps;" && return 2
		return 1
	}

	# train NAME [FLAGS...] trains DIR/DATASET/NAME (resuming it) unless
	# finished, and records its model file.
	train() {
		local name=$1 dir=$out/$ds/$1 start prev
		shift
		mkdir -p "$dir"
		if [ "$(step_of "$dir")" != "$steps" ]; then
			local resume=()
			[ -f "$dir/latest.json" ] && resume=(--resume)
			start=$(date +%s)
			bin/logitpair train "${base[@]}" "$@" --out "$dir" "${resume[@]}" | tee -a "$dir/train.log"
			prev=$(cat "$dir/wall_seconds" 2>/dev/null || echo 0)
			echo $((prev + $(date +%s) - start)) >"$dir/wall_seconds"
		fi
		model[$name]=$(model_of "$dir")
	}

	for obj in plain mpgd alp; do
		rc=0
		m=$(reusable "$obj") || rc=$?
		case $rc in
		0) echo "repro-transfer: $ds $obj: reusing $m"; model[$obj]=$m ;;
		2) echo "repro-transfer: runs/repro-mnist/$obj is still training with this budget; re-run this script when it is done" >&2
			incomplete+=("$ds $obj: runs/repro-mnist/$obj still training") ;;
		*) train "$obj" --objective "$obj" --seed 1 ;;
		esac
	done
	train static-a --objective plain --seed 2 --model-config '{"conv1": 16, "conv2": 32, "hidden": 512}'
	train static-b --objective plain --seed 3
	train ensemble-adv --objective ensemble-adv --single-step "$single" --seed 1 \
		--static-models "${model[static-a]},${model[static-b]}" --source-schedule round-robin
	train single-step --objective single-step --single-step stepll --random-eps --seed 1

	mkdir -p "$out/$ds/eval"
	rows=() srcs=()
	for s in plain mpgd alp; do
		[ -n "${model[$s]:-}" ] && srcs+=(--source "$s=${model[$s]}")
	done
	for obj in ensemble-adv single-step mpgd alp; do
		[ -n "${model[$obj]:-}" ] || continue
		args=(--checkpoint "${model[$obj]}" --dataset "$ds" --data-dir "data/$ds" --examples "$examples"
			--attack "pgd_${eps255}_${pgdstep}_40,fgsm_${eps255},stepll_${eps255}" --threads "$threads")
		for s in plain mpgd alp; do
			[ "$s" != "$obj" ] && [ -n "${model[$s]:-}" ] && args+=(--source "${model[$s]}")
		done
		json=$out/$ds/eval/$obj.json
		# Resumable: an evaluation is redone only when its inputs changed.
		if [ "$(cat "$json.args" 2>/dev/null)" != "${args[*]}" ] || [ ! -s "$json" ]; then
			bin/logitpair eval "${args[@]}" --json "$json" | tee "$out/$ds/eval/$obj.txt"
			echo "${args[*]}" >"$json.args"
		fi
		rows+=("$obj=$json")
	done
	if [ ${#rows[@]} -gt 0 ] && [ ${#srcs[@]} -gt 0 ]; then
		echo "== $ds: transfer table (budget: $steps steps each, $examples test images, ε = $eps) =="
		bin/logitpair report "${srcs[@]}" "${rows[@]}" | tee "$out/$ds/transfer-table.md"
	fi
	unset model
done
if [ ${#incomplete[@]} -gt 0 ]; then
	echo "repro-transfer: incomplete:" >&2
	printf '  %s\n' "${incomplete[@]}" >&2
	exit 3
fi
