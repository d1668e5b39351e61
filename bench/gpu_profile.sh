#!/usr/bin/env bash
# Where a GPU step's time goes (device tool, first call of a session): bash bench/gpu_profile.sh
# Needs the wheels the GPU image lacks in .whl/ (kornia, kornia-rs, warmup-scheduler). Logs go to $OUT.
source bench/gpu_setup.sh gpu_profile
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.backends.cudnn.version())"
prof() {  # name, then bench.profile's arguments; $limit seconds (default 90)
  local name=$1; shift
  timeout "${limit:-90}" python3 -m bench.profile --device cuda --top 30 "$@" > "$out/$name.txt" 2>&1
  grep -E "^(==|warm-up|kernels)" "$out/$name.txt" || tail -3 "$out/$name.txt"
}
prof train_fp32 --what train
prof train_tf32 --what train --tf32
prof train_amp_cl --what train --amp --channels_last
prof train_amp --what train --amp
prof infer_fp32 --what infer --batch 8
prof infer_amp_cl --what infer --batch 8 --amp --channels_last
limit=150 prof train_amp_cl_compile --what train --amp --channels_last --compile
echo done
