"""The front page and docs/: every relative link resolves (files and #anchors), and the published links and
numbers they quote are the shipped ones."""
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def prose(page: Path) -> str:
    """The page without its code blocks and inline code, where brackets are code, not links."""
    return re.sub(r"`[^`\n]*`", "", re.sub(r"(?ms)^```.*?^```", "", page.read_text()))


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings: lower case, spaces to '-', punctuation dropped."""
    headings = re.findall(r"(?m)^#+ (.+)$", re.sub(r"(?ms)^```.*?^```", "", page.read_text()))
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_resolve(page: Path):
    broken = []
    for target in LINK.findall(prose(page)):
        if re.match(r"[a-z]+://|mailto:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists() or (anchor and anchor not in anchors(file)):
            broken.append(target)
    assert not broken, broken


def test_the_front_page_is_a_map():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 220
    for section in ("Install", "Quick start", "Derain your images", "Datasets", "Train",
                    "Evaluate and reproduce Table 1", "Deploy and web app", "Citation", "License", "Acknowledgements"):
        assert f"\n## {section}\n" in readme, section
    assert all(f"](docs/{p.name})" in readme for p in (REPO / "docs").glob("*.md")), "every docs page is linked"


def test_dataset_links_are_the_shipped_ones():
    shipped = json.loads((REPO / "data" / "datasets.json").read_text())["datasets"]
    readme = (REPO / "README.md").read_text()
    for name, dataset in shipped.items():
        row = next(line for line in readme.splitlines() if line.startswith(f"| {name} |"))
        assert f"| {dataset['baidu_url']} | {dataset['baidu_code']} |" in row, name
    assert len(re.findall(r"https://pan\.baidu\.com/\S+", readme)) == len(shipped)
