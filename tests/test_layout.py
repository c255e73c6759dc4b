"""The package layout the design fixes: imports go studio -> widgets -> flows -> kernels."""

from __future__ import annotations

import ast

import pytest

from tests.conftest import ROOT

LAYERS = ["kernels", "flows", "widgets", "studio"]  # each may import only those before it


def imported_packages(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in LAYERS and top != package:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


@pytest.mark.parametrize("package", LAYERS)
def test_imports_go_one_way(package):
    allowed = set(LAYERS[: LAYERS.index(package)])
    wrong = {top: files for top, files in imported_packages(package).items() if top not in allowed}
    assert wrong == {}, f"{package}/ imports packages above it: {wrong}"


def test_layout_directories_exist():
    for name in [*LAYERS, "examples", "tests", "benchmarks"]:
        assert (ROOT / name).is_dir(), name


KERNEL_SIDE = ["kernel_app", "zygote", "child", "framing", "values", "client"]


@pytest.mark.parametrize("module", KERNEL_SIDE)
def test_kernel_side_modules_use_only_the_standard_library(module):
    # They run inside environments that hold nothing but the user's packages and ipykernel.
    import sys

    tree = ast.parse((ROOT / "kernels" / f"{module}.py").read_text())
    tops = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            tops |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            tops.add(node.module.split(".")[0])
    outside = {
        t
        for t in tops
        if t not in sys.stdlib_module_names and t not in {"kernels", "IPython", "ipykernel"}
    }
    assert outside == set()
