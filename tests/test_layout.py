"""The layering: utils/ is the floor, and the lower packages never import the scripts or the higher ones."""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROJECT = {"models", "losses", "data", "evaluations", "utils", "bench", "train", "test", "app"}
# What each package may import from the project, besides itself.
ALLOWED = {
    "utils": set(),
    "models": {"utils"},
    "losses": {"utils"},
    "data": {"utils"},
    "evaluations": {"utils", "models"},
}


def project_imports(path: Path) -> set[str]:
    """The project's top-level packages and modules that a file imports (relative imports excluded)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & PROJECT


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_packages_import_only_lower_layers(package):
    offending = {f"{path.relative_to(REPO)}: {sorted(imports - ALLOWED[package] - {package})}"
                 for path in sorted((REPO / package).glob("*.py"))
                 if (imports := project_imports(path)) - ALLOWED[package] - {package}}
    assert not offending, offending
