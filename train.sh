#!/usr/bin/env bash
# Train NeRD-Rain: bash train.sh [OPTIONS.yml] [--gpus N] [--nnodes N --node_rank R --master_addr HOST
#                  [--master_port PORT]] [train.py arguments ...]
#   bash train.sh options/rain200h.yml --set train.lr=2e-4 --resume auto
#   bash train.sh options/rain200h.yml --gpus 8 --nnodes 2 --node_rank 0 --master_addr node1   # on node1
#   bash train.sh options/rain200h.yml --gpus 8 --nnodes 2 --node_rank 1 --master_addr node1   # on node2
#   srun bash train.sh options/rain200h.yml     # Slurm, one task per GPU: ranks come from Slurm's variables
# OPTIONS.yml defaults to options/rain200l.yml. With more than one visible GPU, --gpus N (N > 1, the
# processes per node) or --nnodes N (N > 1), torchrun starts the processes of this node, which train
# with DistributedDataParallel (datasets.train.batch_size is per process) and meet at MASTER_ADDR
# (node_rank 0's host) through torchrun's c10d rendezvous on MASTER_PORT (default 29500). Under srun
# each task is one process and train.py reads its place from Slurm. Otherwise one process runs
# train.py. Set PYTHON to choose the interpreter.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python}"
opt="$here/options/rain200l.yml"
if [[ $# -gt 0 && "$1" != -* ]]; then
  opt="$1"
  shift
fi
gpus="" nnodes=1 node_rank=0 master_addr="" master_port=29500
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --gpus|--nnodes|--node_rank|--master_addr|--master_port)
      name="${1#--}"; printf -v "$name" '%s' "${2:-}"; shift $(( $# > 1 ? 2 : 1 )) ;;
    --gpus=*|--nnodes=*|--node_rank=*|--master_addr=*|--master_port=*)
      name="${1%%=*}"; name="${name#--}"; printf -v "$name" '%s' "${1#*=}"; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
fail() { echo "error: $1" >&2; exit 2; }
if [[ -n "${SLURM_STEP_NUM_TASKS:-}" && -z "${RANK:-}" && "$SLURM_STEP_NUM_TASKS" -gt 1 ]]; then
  (( SLURM_PROCID == 0 )) && echo "train.sh: $SLURM_STEP_NUM_TASKS Slurm tasks (DistributedDataParallel), one process each"
  exec "$python" "$here/train.py" --opt "$opt" "${args[@]}"
fi
[[ -z "$gpus" || "$gpus" =~ ^[1-9][0-9]*$ ]] || fail "--gpus needs a number of processes per node (1 or more), got '$gpus'"
[[ "$nnodes" =~ ^[1-9][0-9]*$ ]] || fail "--nnodes needs a number of nodes (1 or more), got '$nnodes'"
[[ "$node_rank" =~ ^[0-9]+$ ]] && (( node_rank < nnodes )) ||
  fail "--node_rank needs a number from 0 to $(( nnodes - 1 )) (--nnodes $nnodes), got '$node_rank'"
[[ "$master_port" =~ ^[0-9]+$ ]] || fail "--master_port needs a port number, got '$master_port'"
(( nnodes == 1 )) || [[ -n "$master_addr" ]] ||
  fail "--nnodes $nnodes needs --master_addr: the host name or address of the node with --node_rank 0"
found="$("$python" -c 'import torch; print(torch.cuda.device_count())')"
if [[ -z "$gpus" ]]; then
  gpus=$(( found > 0 ? found : 1 ))
fi
if (( gpus > 1 || nnodes > 1 )); then
  where=""
  (( found == 0 )) && where="; no CUDA GPU here, so they share the CPU (each holds a whole model)"
  (( found > 0 && found < gpus )) && where="; but only $found CUDA GPU(s) are visible: --gpus $found"
  if (( nnodes > 1 )); then
    echo "train.sh: node $node_rank of $nnodes, $gpus processes here, $(( nnodes * gpus )) in all, with torchrun" \
         "(DistributedDataParallel) meeting at $master_addr:$master_port$where"
    # c10d numbers the processes in the order their nodes join; node_rank 0 hosts the rendezvous
    launch=(--nnodes "$nnodes" --rdzv_backend c10d --rdzv_endpoint "$master_addr:$master_port"
            --rdzv_id "${SLURM_JOB_ID:-nerd-rain}" --rdzv_conf "is_host=$(( node_rank == 0 ))")
  else
    echo "train.sh: $gpus processes with torchrun (DistributedDataParallel)$where"
    launch=(--standalone)
  fi
  PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" exec "$python" -m training.torchrun "${launch[@]}" \
    --nproc_per_node "$gpus" "$here/train.py" --opt "$opt" "${args[@]}"
fi
exec "$python" "$here/train.py" --opt "$opt" "${args[@]}"
