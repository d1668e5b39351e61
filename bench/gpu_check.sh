#!/usr/bin/env bash
# One prepared GPU session (device tool): bash bench/gpu_check.sh COMMIT
# Needs the wheels the GPU image lacks in .whl/ (kornia, kornia-rs, warmup-scheduler) and the
# golden fixture copied to .bench/parity.pt. Logs and JSON rows go to $OUT.
set -u
export PYTHONUNBUFFERED=1
out="${OUT:-/tmp/gpu_check}"; mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site || exit 1
log() { echo "== $*" | tee -a "$out/summary.txt"; }
log "commit ${1:-unknown}, $(date -u +%F)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$out/summary.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" | tee -a "$out/summary.txt"

log "golden weights, bf16 autocast vs fp32 (2e-2 target)"
timeout 60 python3 -m bench.speed --what infer --device cuda --weights .bench/parity.pt --batch 8 --amp \
  --repeats 5 --json "$out/golden_amp.json" 2>&1 | tail -6 | tee -a "$out/summary.txt"
log "inference, NeRD-Rain, 8 windows of 256x256"
timeout 120 python3 -m bench.speed --what infer --device cuda --batch 8 --amp --channels_last \
  --repeats 10 --json "$out/infer.json" 2>&1 | tail -8 | tee -a "$out/summary.txt"
log "training iteration, NeRD-Rain, batch 1, patch 256"
timeout 120 python3 -m bench.speed --what train --device cuda --batch 1 --amp --channels_last \
  --repeats 10 --json "$out/train.json" 2>&1 | tail -8 | tee -a "$out/summary.txt"

log "train.py and test.py on CUDA (synthetic pairs, NeRD-Rain-S, 2 epochs, --amp)"
python3 -m data.synthetic --out /tmp/syn/train --pairs 8 --size 128 --seed 1 > /dev/null
python3 -m data.synthetic --out /tmp/syn/test --pairs 2 --size 128 --seed 2 > /dev/null
timeout 120 python3 train.py --opt options/tiny_rain200h.yml --amp --set \
  datasets.train.dir=/tmp/syn/train datasets.val.dir=/tmp/syn/test train.epochs=3 \
  paths.experiment=/tmp/exp 2>&1 | tail -5 | tee -a "$out/summary.txt"
timeout 60 python3 test.py --input_dir /tmp/syn/test/input --target_dir /tmp/syn/test/target \
  --output_dir /tmp/res --weights /tmp/exp/model_latest.pth --amp 2>&1 | tail -5 | tee -a "$out/summary.txt"

log "inference with torch.compile (all options together)"
timeout 240 python3 -m bench.speed --what infer --device cuda --batch 8 --amp --channels_last --compile \
  --combined_only --warmup 3 --repeats 10 --json "$out/infer_compile.json" 2>&1 | tail -6 | tee -a "$out/summary.txt"
log "done"
