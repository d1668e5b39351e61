"""The layering: utils/ is the floor and knows nothing of NeRD-Rain, and the lower packages never import the
scripts or the higher ones."""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROJECT = {"models", "losses", "data", "evaluations", "inference", "training", "utils", "bench", "train", "test",
           "app", "webapp"}
# What each package may import from the project, besides itself.
ALLOWED = {
    "utils": set(),
    "models": {"utils"},
    "losses": {"utils"},
    "data": {"utils"},
    "inference": {"utils", "models"},  # the deraining pipeline
    "evaluations": {"utils", "models", "data", "inference"},  # reproduce.py derains the test sets
    "training": {"utils", "models", "losses", "data", "evaluations"},  # the training pipeline
    "webapp": {"utils", "models", "evaluations", "inference"},  # the web app's layer, beside the scripts
}
# Optional packages and the only files that may import them: gradio (requirements-app.txt; app.py imports it
# through the page) and the ONNX packages (requirements-deploy.txt; imported when first used).
ONNX_USERS = {"inference/onnx_runtime.py", "inference/export_onnx.py"}
OPTIONAL_USERS = {"gradio": {"webapp/page.py"}, "onnx": ONNX_USERS, "onnxscript": ONNX_USERS,
                  "onnxruntime": ONNX_USERS}


def top_level_imports(path: Path) -> set[str]:
    """The top-level packages and modules that a file imports (relative imports excluded)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def project_imports(path: Path) -> set[str]:
    """The project's top-level packages and modules that a file imports (relative imports excluded)."""
    return top_level_imports(path) & PROJECT


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_packages_import_only_lower_layers(package):
    offending = {f"{path.relative_to(REPO)}: {sorted(imports - ALLOWED[package] - {package})}"
                 for path in sorted((REPO / package).glob("*.py"))
                 if (imports := project_imports(path)) - ALLOWED[package] - {package}}
    assert not offending, offending


@pytest.mark.parametrize("package", sorted(OPTIONAL_USERS))
def test_optional_packages_are_imported_only_where_allowed(package):
    sources = (path.relative_to(REPO) for path in REPO.rglob("*.py"))
    users = {path.as_posix() for path in sources if not any(part.startswith(".") for part in path.parts)
             and path.parts[0] != "tests" and package in top_level_imports(REPO / path)}
    assert users <= OPTIONAL_USERS[package], users - OPTIONAL_USERS[package]


def test_utils_knows_nothing_of_the_network_or_its_pipelines():
    """utils/ is readable without knowing NeRD-Rain: no name of the network, its methods or its runtimes."""
    words = ("nerd", "batch_invariant", "reduce_chan", "onnx", "authors", "window")
    found = {f"{path.name}: {word}" for path in sorted((REPO / "utils").glob("*.py"))
             for word in words if word in path.read_text().lower()}
    assert not found, found
