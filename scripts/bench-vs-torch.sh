#!/usr/bin/env bash
# Times logitpair's engine and PyTorch (Debian python3-torch) on the same step,
# same model, batch and thread count, in one run, and prints the ratios.
#
#   scripts/bench-vs-torch.sh [--model M] [--batch N] [--threads T] [--rounds R]
#
# Steps: "full" (forward + backward, every gradient), "input-grad only" (what
# one PGD step needs) and a whole ALP training step (PGD-40 with ε 0.3, α 0.01
# in eval mode, then clean + adversarial forward/backward in train mode with
# the MSE pairing term, then Adam).
#
# Rounds alternate ours and PyTorch's so machine noise hits both alike; the
# median of each side's per-round medians is reported. Needs /usr/bin/python3
# with torch (developer-time only; `make test` never runs this).
#
# Some machines here set OPENBLAS_CORETYPE (and OPENBLAS_L2_SIZE) to force
# OpenBLAS onto older kernels (e.g. Haswell/AVX2 on an AVX-512 CPU). Both
# engines use OpenBLAS (ours for every GEMM, PyTorch for its dense layers), so
# when it is set, everything runs twice: under the environment as given, and
# with the two variables unset (OpenBLAS's own choice for this CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
model=madry-mnist batch=50 threads=2 rounds=3
while [ $# -gt 0 ]; do
	case "$1" in
	--model) model=$2; shift 2 ;;
	--batch) batch=$2; shift 2 ;;
	--threads) threads=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	*) echo "unknown argument $1" >&2; exit 2 ;;
	esac
done
export PATH="$PATH:/usr/local/go/bin"
mkdir -p bin
go build -o bin/logitpair ./cmd/logitpair
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
envs="given"
[ -n "${OPENBLAS_CORETYPE:-}${OPENBLAS_L2_SIZE:-}" ] && envs="given native"
for e in $envs; do
	run=(env)
	[ "$e" = native ] && run=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE)
	for mode in full input alp; do
		ours=(bench step)
		flag=()
		case $mode in
		input) flag=(--input-grad-only) ;;
		alp) ours=(bench train-step) flag=() ;;
		esac
		for r in $(seq "$rounds"); do
			"${run[@]}" bin/logitpair "${ours[@]}" --model "$model" --batch "$batch" --threads "$threads" "${flag[@]}" --json - 2>/dev/null >"$tmp/ours-$e-$mode-$r.json"
			tflag=("${flag[@]}")
			[ "$mode" = alp ] && tflag=(--alp --warmup 1 --steps 5)
			"${run[@]}" /usr/bin/python3 scripts/bench_torch.py --model "$model" --batch "$batch" --threads "$threads" "${tflag[@]}" >"$tmp/torch-$e-$mode-$r.json"
		done
	done
done
kernel_given=$(OPENBLAS_VERBOSE=2 bin/logitpair bench step --steps 1 --warmup 0 --batch 1 2>&1 | sed -n 's/^Core: //p')
kernel_native=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_VERBOSE=2 bin/logitpair bench step --steps 1 --warmup 0 --batch 1 2>&1 | sed -n 's/^Core: //p')
export envs kernel_given kernel_native
/usr/bin/python3 - "$tmp" "$rounds" <<'PY'
import json, os, statistics, sys, platform
tmp, rounds = sys.argv[1], int(sys.argv[2])
def load(side, env, mode):
    return [json.load(open(f"{tmp}/{side}-{env}-{mode}-{r}.json")) for r in range(1, rounds + 1)]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
for env in os.environ["envs"].split():
    res = {}
    for mode in ("full", "input", "alp"):
        ours, torch = load("ours", env, mode), load("torch", env, mode)
        o = statistics.median(x["ms_per_step"] for x in ours)
        t = statistics.median(x["ms_per_step"] for x in torch)
        res[mode] = (o, t, max(x["peak_rss_mb"] for x in ours), max(x["peak_rss_mb"] for x in torch), ours[0])
    r0 = res["full"][4]
    kernel = os.environ.get("kernel_" + env) or "?"
    label = {"given": "environment as given", "native": "OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset"}[env]
    print(f"machine: {cpu}, {os.cpu_count()} cores; {label} (OpenBLAS kernel: {kernel})")
    print(f"model {r0['model']}, batch {r0['batch']}, {r0['threads']} threads, {rounds} alternating rounds; ours: {r0['backend']}")
    print(f"{'step':<22}{'ours ms':>10}{'torch ms':>10}{'ratio':>8}{'ours MB':>9}{'torch MB':>9}")
    for mode, name in (("full", "full step"), ("input", "input-grad only"), ("alp", "ALP step (PGD-40)")):
        o, t, om, tm, _ = res[mode]
        print(f"{name:<22}{o:>10.2f}{t:>10.2f}{o / t:>7.2f}x{om:>9.0f}{tm:>9.0f}")
    print(f"input-grad-only / full step: ours {res['input'][0] / res['full'][0]:.2f}, torch {res['input'][1] / res['full'][1]:.2f}")
    print()
PY
