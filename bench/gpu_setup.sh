# Sourced by bench/gpu_*.sh on a lent GPU machine: `source bench/gpu_setup.sh NAME`. Unbuffered Python,
# the wheels the GPU image lacks (.whl/: kornia, kornia-rs, warmup-scheduler) on PYTHONPATH, and
# $out ($OUT, else /tmp/NAME) for logs.
set -u
export PYTHONUNBUFFERED=1
out="${OUT:-/tmp/$1}"; mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site || exit 1
