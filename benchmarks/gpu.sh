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

paper=(--epochs 30 --batch-size 2048 --lr 1e-3)
fast=(--lr-schedule onecycle --label-smoothing 0.1 --precision bf16 --compile)
declare -A runs=(
  # (i) the paper's protocol (Adam 1e-3, batch 2048, 30 epochs, full MNIST)
  [paper-fp32]="${paper[*]} --precision fp32"
  [paper-bf16]="${paper[*]} --precision bf16"
  [paper-bf16-compiled]="${paper[*]} --precision bf16 --compile"
  [paper-bf16-compiled-seed1]="${paper[*]} --precision bf16 --compile --seed 1"
  [paper-bf16-cudagraphs]="${paper[*]} --precision bf16 --compile --compile-mode reduce-overhead"
  # (ii) time to 99 %: declared fast schedules (one-cycle Adam, label smoothing 0.1, compiled, bf16)
  [fast-b1024-e2]="--epochs 2 --batch-size 1024 --lr 6e-3 ${fast[*]}"
  [fast-b2048-e3]="--epochs 3 --batch-size 2048 --lr 1e-2 ${fast[*]}"
  [fast-b512-e2]="--epochs 2 --batch-size 512 --lr 4e-3 ${fast[*]}"
  # (iii) functional checks
  [ddp-world1]="--strategy ddp --workers 1 --epochs 2 --batch-size 2048 --precision bf16"
  [dp-1gpu]="--strategy dp --workers 1 --epochs 2 --batch-size 2048 --precision bf16"
)
order="paper-fp32 paper-bf16 paper-bf16-compiled paper-bf16-compiled-seed1 paper-bf16-cudagraphs
       fast-b1024-e2 fast-b2048-e3 fast-b512-e2 ddp-world1 dp-1gpu"
for name in ${RUNS:-$order}; do
  # shellcheck disable=SC2086  # the options are words on purpose
  run "$name" ${runs[$name]}
done

"$py" benchmarks/gpu_summary.py "$out"
