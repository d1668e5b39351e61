"""The paper's Table 1: the shipped JSON equals the shared transcription, and the README quotes it exactly."""
import json
import re
from pathlib import Path

import pytest

from evaluations.table1 import paper_scores, paper_table

REPO = Path(__file__).resolve().parents[1]


def readme_paper_table() -> dict[str, dict[str, tuple[str, str]]]:
    """{method: {dataset: (psnr text, ssim text)}} from the README's first table (the paper's numbers)."""
    lines = (REPO / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| | Rain200L"))
    datasets = [cell.strip() for cell in lines[start].strip("|").split("|")][1:]
    table = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        name, *cells = (cell.strip() for cell in line.strip("|").split("|"))
        method = name.split(" (")[0]
        table[method] = {d: tuple(re.fullmatch(r"(\d+\.\d+) / (\d\.\d+)", c).groups()) for d, c in zip(datasets, cells)}
    return table


@pytest.mark.shared
def test_shipped_table_is_the_shared_transcription(shared_dir):
    assert paper_table() == json.loads((shared_dir / "paper" / "table1.json").read_text())


def test_every_number_in_the_readme_table_is_the_papers():
    table = readme_paper_table()
    assert set(table) == {"NeRD-Rain", "NeRD-Rain-S"}
    for method, row in table.items():
        assert list(row) == paper_table()["datasets"]
        for dataset, (psnr, ssim) in row.items():
            assert (float(psnr), float(ssim)) == paper_scores(method, dataset), (method, dataset)
            assert len(psnr.split(".")[1]) == 2 and len(ssim.split(".")[1]) == 4  # as printed in the paper


def test_paper_scores_of_a_missing_cell():
    assert paper_scores("NeRD-Rain-S", "DDN-Data") == (34.25, 0.9578)
    assert paper_scores("DualGCN", "Rain200L") is None
