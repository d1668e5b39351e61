"""The out-of-the-box demo runs end to end (tiny network, few pairs), so it cannot silently rot."""
import os
import subprocess
import sys
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]


def test_demo_pipeline_runs(tmp_path):
    env = {**os.environ, "DEMO_DIR": str(tmp_path / "demo"), "DEMO_PAIRS": "3", "PYTHON": sys.executable,
           "OMP_NUM_THREADS": "1"}
    tiny = ["--set", "network.dim=8", "network.num_blocks=[1,1,1]", "network.heads=[1,1,2]", "train.epochs=2",
            "datasets.train.patch_size=32"]
    result = subprocess.run(["bash", str(REPO / "demo.sh"), *tiny], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "val PSNR of the rainy inputs" in result.stdout
    assert result.stdout.count("mean (6 images)") == 2  # rainy inputs, then the derained results
    comparisons = sorted((tmp_path / "demo" / "results" / "comparison").glob("*.png"))
    assert len(comparisons) == 6
    assert cv2.imread(str(comparisons[0])).shape == (128, 3 * 128, 3)
    assert (tmp_path / "demo" / "experiment" / "metrics.csv").read_text().count("\n") == 3  # header + 2 epochs
