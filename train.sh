#!/usr/bin/env bash
# Train NeRD-Rain: bash train.sh [OPTIONS.yml] [--gpus N] [train.py arguments ...]
#   bash train.sh options/rain200h.yml --set train.lr=2e-4 --resume auto
# OPTIONS.yml defaults to options/rain200l.yml. With more than one visible GPU, or --gpus N (N > 1),
# torchrun starts N processes on this machine that train with DistributedDataParallel
# (datasets.train.batch_size is per process); otherwise one process runs train.py.
# Set PYTHON to choose the interpreter.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python}"
opt="$here/options/rain200l.yml"
if [[ $# -gt 0 && "$1" != -* ]]; then
  opt="$1"
  shift
fi
gpus=""
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --gpus) gpus="${2:-}"; shift $(( $# > 1 ? 2 : 1 )) ;;
    --gpus=*) gpus="${1#--gpus=}"; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
if [[ -z "$gpus" ]]; then
  gpus="$("$python" -c 'import torch; print(torch.cuda.device_count())')"
elif ! [[ "$gpus" =~ ^[1-9][0-9]*$ ]]; then
  echo "error: --gpus needs a number of processes (1 or more), got '$gpus'" >&2
  exit 2
fi
if (( gpus > 1 )); then
  found="$("$python" -c 'import torch; print(torch.cuda.device_count())')"
  where=""
  (( found == 0 )) && where="; no CUDA GPU here, so they share the CPU (each holds a whole model)"
  (( found > 0 && found < gpus )) && where="; but only $found CUDA GPU(s) are visible: --gpus $found"
  echo "train.sh: $gpus processes with torchrun (DistributedDataParallel)$where"
  exec "$python" -m torch.distributed.run --standalone --nproc_per_node "$gpus" \
    "$here/train.py" --opt "$opt" "${args[@]}"
fi
exec "$python" "$here/train.py" --opt "$opt" "${args[@]}"
