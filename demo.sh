#!/usr/bin/env bash
# The whole pipeline on synthetic rain, no downloads, a few minutes on a CPU (a GPU is used if present):
#   bash demo.sh [train.py arguments, e.g. --set train.epochs=8]
# 1. makes rainy/clean pairs from scikit-image's photos (kept for the next run),
# 2. trains NeRD-Rain-S briefly (options/demo.yml; a fresh run each time, in demo/experiment),
# 3. derains the held-out pairs with test.py and scores the rainy inputs and the results (protocol A),
# 4. writes side-by-side input | output | target PNGs to demo/results/comparison/.
# It shows the code working end to end; its numbers are not the paper's.
# DEMO_DIR (default demo) and DEMO_PAIRS (training pairs, default 40) change where and how much.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
python="${PYTHON:-python}"
dir="${DEMO_DIR:-demo}"

"$python" -m data.synthetic --out "$dir/data/train" --pairs "${DEMO_PAIRS:-40}" --size 128 --preset heavy --seed 1
"$python" -m data.synthetic --out "$dir/data/test" --pairs 6 --size 128 --preset heavy --seed 2

rm -rf "$dir/experiment" "$dir/results"  # the demo's own outputs: each run starts afresh
"$python" train.py --opt options/demo.yml --set datasets.train.dir="$dir/data/train" \
  datasets.val.dir="$dir/data/test" paths.experiment="$dir/experiment" "$@"

echo; echo "== rainy inputs against the clean targets"
"$python" -m evaluations.evaluate --result_dir "$dir/data/test/input" --target_dir "$dir/data/test/target" --protocol A
echo; echo "== derained by the demo model"
"$python" test.py --input_dir "$dir/data/test/input" --target_dir "$dir/data/test/target" --output_dir "$dir/results" \
  --weights "$dir/experiment/model_best.pth" --win_size 128 --save_comparison
echo; echo "side-by-side comparisons (input | output | target): $dir/results/comparison/"
