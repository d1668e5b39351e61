"""The paper's Table 1 (PSNR/SSIM of each method on the five test sets), shipped as table1.json.

table1.json is transcribed from the authors' table image; its "source" entry says from where. It is the
only place the published numbers live.
"""
import json
from functools import cache
from pathlib import Path

TABLE1 = Path(__file__).with_name("table1.json")


@cache
def paper_table() -> dict:
    """{"source", "datasets": [...], "methods": {method: {dataset: [psnr, ssim]}}}, as shipped."""
    return json.loads(TABLE1.read_text())


def paper_scores(method: str, dataset: str) -> tuple[float, float] | None:
    """(PSNR, SSIM) the paper reports for `method` on `dataset`; None if Table 1 has no such cell."""
    cell = paper_table()["methods"].get(method, {}).get(dataset)
    return tuple(cell) if cell else None
