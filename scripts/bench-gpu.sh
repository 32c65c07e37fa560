#!/usr/bin/env bash
# Times logitpair's CUDA backend and PyTorch on the same GPU, same model,
# batch and whole training step, in one run, and prints samples/s and ratios.
#
#   scripts/bench-gpu.sh [--rounds R] [--out DIR]
#
# Needs a CUDA GPU, a `logitpair` built with cgo (not `make static`: the CUDA
# backend is loaded with dlopen) at $LOGITPAIR or bin/logitpair (built here
# when Go is on PATH), and a Python with a CUDA PyTorch at $PYTHON (default
# python3). Developer-time only; `make test` never runs it.
#
# Workloads (issue: GPU backend, item 5), each a whole ALP training step:
# the attack in evaluation mode, then the clean + adversarial batch forward
# and backward in training mode with the MSE pairing term, then Adam:
#   - madry-mnist, batch 50, PGD-40 (ε 0.3, α 0.01): Madry et al.'s MNIST step;
#   - resnet-v2-50 at 64×64 with 1000 classes (the released ALP code's 64×64
#     ImageNet model), batch 32 clean images per replica, PGD-10 with ε 16/255
#     and α 2/255 (the released models' pgdll_16_2_10 budget).
# PyTorch runs twice: with its defaults (cuDNN convolutions may use TF32
# tensor cores) and in strict float32 (--no-tf32), which is what logitpair's
# backend computes (cuBLAS SGEMM in float32). Rounds alternate the engines so
# clock and thermal drift hit all alike; each side's median over rounds of
# per-round medians is reported.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=3 out=""
while [ $# -gt 0 ]; do
	case "$1" in
	--rounds) rounds=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	*) echo "unknown argument $1" >&2; exit 2 ;;
	esac
done
PYTHON=${PYTHON:-python3}
LOGITPAIR=${LOGITPAIR:-bin/logitpair}
if command -v go >/dev/null 2>&1; then
	mkdir -p bin
	go build -o bin/logitpair ./cmd/logitpair
	LOGITPAIR=bin/logitpair
fi
[ -x "$LOGITPAIR" ] || { echo "bench-gpu: no logitpair binary at $LOGITPAIR (set LOGITPAIR)" >&2; exit 1; }
tmp=${out:-$(mktemp -d)}
mkdir -p "$tmp"

# name|model|model-config|batch|attack-steps|eps|step-size|warmup|steps
workloads=(
	"mnist|madry-mnist|{}|50|40|0.3|0.01|3|20"
	"rn50-64|resnet-v2-50|{\"image_size\": 64, \"classes\": 1000}|32|10|0.0627451|0.00784314|2|5"
)
for r in $(seq "$rounds"); do
	for w in "${workloads[@]}"; do
		IFS='|' read -r name model mc batch k eps alpha warm steps <<<"$w"
		common=(--model "$model" --model-config "$mc" --batch "$batch" --attack-steps "$k" --eps "$eps" --step-size "$alpha" --warmup "$warm" --steps "$steps")
		"$LOGITPAIR" bench train-step --device cuda --objective alp "${common[@]}" --json "$tmp/ours-$name-$r.json" >/dev/null
		"$PYTHON" scripts/bench_torch.py --device cuda --alp "${common[@]}" >"$tmp/torch-$name-$r.json"
		"$PYTHON" scripts/bench_torch.py --device cuda --alp --no-tf32 "${common[@]}" >"$tmp/torch32-$name-$r.json"
	done
done
"$PYTHON" - "$tmp" "$rounds" <<'PY'
import json, statistics, sys, subprocess
tmp, rounds = sys.argv[1], int(sys.argv[2])
def med(side, name, key):
    return statistics.median(json.load(open(f"{tmp}/{side}-{name}-{r}.json"))[key] for r in range(1, rounds + 1))
try:
    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True).stdout.strip()
except OSError:
    gpu = "?"
first = lambda side, name: json.load(open(f"{tmp}/{side}-{name}-1.json"))
print(f"GPU: {gpu}; {rounds} alternating rounds; ours: {first('ours', 'mnist')['backend']}; "
      f"PyTorch: {first('torch', 'mnist')['backend'].split(' cuda ')[0]}")
print(f"{'workload':<44}{'ours ms':>9}{'torch ms':>9}{'fp32 ms':>9}{'ours/s':>9}{'torch/s':>9}{'fp32/s':>9}{'vs torch':>9}{'vs fp32':>9}")
rows = []
for name, label in (("mnist", "madry-mnist ALP, b50, PGD-40"), ("rn50-64", "resnet-v2-50 64x64 ALP, b32, PGD-10")):
    o, t, t32 = med("ours", name, "ms_per_step"), med("torch", name, "ms_per_step"), med("torch32", name, "ms_per_step")
    b = first("ours", name)["batch"]
    print(f"{label:<44}{o:9.1f}{t:9.1f}{t32:9.1f}{b*1000/o:9.0f}{b*1000/t:9.0f}{b*1000/t32:9.0f}{o/t:8.2f}x{o/t32:8.2f}x")
    rows.append({"workload": label, "ours_ms": o, "torch_ms": t, "torch_fp32_ms": t32,
                 "ours_samples_per_s": b * 1000 / o, "torch_samples_per_s": b * 1000 / t,
                 "torch_fp32_samples_per_s": b * 1000 / t32, "ratio_vs_torch": o / t, "ratio_vs_torch_fp32": o / t32})
json.dump({"gpu": gpu, "rounds": rounds, "rows": rows}, open(f"{tmp}/summary.json", "w"), indent=1)
print("(ratio = our ms/step over PyTorch's: below 1 is faster)")
PY
