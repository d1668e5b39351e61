#!/usr/bin/env bash
# The short GPU measurement (device tool, little time left): bash bench/gpu_quick.sh
set -u
export PYTHONUNBUFFERED=1
out="${OUT:-/tmp/gpu_quick}"; mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site || exit 1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -m bench.speed --what infer --device cuda --weights .bench/parity.pt --batch 8 --amp --warmup 1 --repeats 3 --json "$out/golden_amp.json" 2>&1 | tail -5
python3 -m bench.speed --what infer --device cuda --batch 8 --amp --channels_last --combined_only --warmup 2 --repeats 5 --json "$out/infer.json" 2>&1 | tail -5
python3 -m bench.speed --what train --device cuda --batch 1 --amp --channels_last --warmup 2 --repeats 5 --json "$out/train.json" 2>&1 | tail -7
