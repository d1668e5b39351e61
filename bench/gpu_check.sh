#!/usr/bin/env bash
# One prepared GPU session (device tool), about 5 minutes: bash bench/gpu_check.sh COMMIT
# Needs the wheels the GPU image lacks in .whl/ (kornia, kornia-rs, warmup-scheduler). Logs and JSON
# rows go to $OUT; the most wanted first.
source bench/gpu_setup.sh gpu_check
log() { echo "== $*" | tee -a "$out/summary.txt"; }
log "commit ${1:-unknown}, $(date -u +%F)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$out/summary.txt"

log "CUDA-only tests (CUDA-graphed training against eager)"
timeout 90 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tail -3 | tee -a "$out/summary.txt"
log "training iteration, NeRD-Rain, batch 1, patch 256"
timeout 120 python3 -m bench.speed --what train --device cuda --batch 1 --amp --channels_last --cuda_graph \
  --warmup 2 --repeats 8 --json "$out/train.json" 2>&1 | tail -10 | tee -a "$out/summary.txt"
log "CUDA peak memory and time with and without train.checkpoint_activations, patch 256, batch 1 (issue 27)"
timeout 150 python3 -m bench.memory --device cuda --repeats 3 --json "$out/memory.json" 2>&1 | tail -6 | tee -a "$out/summary.txt"
log "train.py --amp --channels_last --cuda_graph (NeRD-Rain-S, 16 synthetic pairs of 128x128, 2 epochs)"
python3 -m data.synthetic --out /tmp/syn/train --pairs 16 --size 128 --seed 1 > /dev/null
python3 -m data.synthetic --out /tmp/syn/test --pairs 2 --size 128 --seed 2 > /dev/null
timeout 90 python3 train.py --opt options/rain200h_s.yml --amp --channels_last --cuda_graph --set \
  datasets.train.dir=/tmp/syn/train datasets.val.dir=/tmp/syn/test datasets.train.patch_size=128 \
  datasets.val.patch_size=128 train.epochs=2 train.warmup_epochs=1 paths.experiment=/tmp/exp > "$out/train_py.txt" 2>&1; echo "rc $?" >> "$out/train_py.txt"
tail -4 "$out/train_py.txt" | tee -a "$out/summary.txt"
log "golden weights, bf16 autocast against fp32 (2e-2 target)"
timeout 60 python3 -m bench.speed --what infer --device cuda --weights tests/fixtures/golden/parity.pt --batch 8 --amp \
  --repeats 5 --json "$out/golden_amp.json" 2>&1 | tail -5 | tee -a "$out/summary.txt"
log "inference, NeRD-Rain, 8 windows of 256x256, all options together (torch.compile)"
timeout 200 python3 -m bench.speed --what infer --device cuda --batch 8 --amp --channels_last --compile \
  --combined_only --warmup 3 --repeats 10 --json "$out/infer.json" 2>&1 | tail -5 | tee -a "$out/summary.txt"
log "done"
