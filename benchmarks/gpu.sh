#!/usr/bin/env bash
# The GPU protocol: every GPU check of Parallel Vision in one script (~5 minutes on one H100).
#   (i)   the paper's protocol on one GPU: full MNIST, 30 epochs, batch 2048, Adam 1e-3
#         (bf16 autocast, channels_last, data resident on the GPU; fp32 and compiled variants beside it);
#   (ii)  time to 99.0 % test accuracy with a declared fast schedule (one-cycle LR, label smoothing);
#   (iii) functional checks: ddp with world size 1 (NCCL) and dp on one GPU.
# Usage: benchmarks/gpu.sh [OUT_DIR]   (needs the dataset: --data-dir via $PVISION_DATA_DIR)
# Prints a table last and writes OUT_DIR/gpu-summary.json. Never run by CI.
set -uo pipefail
out="${1:-benchmarks/results/gpu}"
mkdir -p "$out"
py="${PYTHON:-python3}"
pv() { "$py" -m parallel_vision "$@"; }
common=(--framework torch --device "${DEVICE:-cuda}" --quiet --no-tensorboard ${PV_EXTRA:-})

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
pv info --json > "$out/info.json" || true

run() {  # name, then train options
  local name=$1; shift
  echo "== $name: $*"
  local t0=$SECONDS
  if pv train "${common[@]}" --out "$out/$name" --overwrite "$@" 2> "$out/$name.err"; then
    echo "   ok in $((SECONDS - t0)) s (process wall time)"
  else
    echo "   FAILED: $(tail -n 1 "$out/$name.err")"
  fi
}

# (i) the paper's protocol
run paper-bf16 --epochs 30 --batch-size 2048 --lr 1e-3 --precision bf16
run paper-fp32 --epochs 30 --batch-size 2048 --lr 1e-3 --precision fp32
run paper-bf16-compiled --epochs 30 --batch-size 2048 --lr 1e-3 --precision bf16 --compile
# (ii) time to 99 %: declared fast schedules (one-cycle Adam, label smoothing 0.1, no dropout change)
run fast-b512-e2 --epochs 2 --batch-size 512 --lr 4e-3 --lr-schedule onecycle --label-smoothing 0.1 --precision bf16
run fast-b512-e3 --epochs 3 --batch-size 512 --lr 4e-3 --lr-schedule onecycle --label-smoothing 0.1 --precision bf16
run fast-b1024-e3 --epochs 3 --batch-size 1024 --lr 6e-3 --lr-schedule onecycle --label-smoothing 0.1 --precision bf16
# (iii) functional checks
run ddp-world1 --strategy ddp --workers 1 --epochs 2 --batch-size 2048 --precision bf16
run dp-1gpu --strategy dp --workers 1 --epochs 2 --batch-size 2048 --precision bf16

"$py" benchmarks/gpu_summary.py "$out"
