"""Every package the product imports is declared in pyproject.toml and importable on a fresh install."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

# Import name -> distribution name, for every third-party package the product or its README's optional paths use.
RUNTIME = {"torch": "torch", "torchvision": "torchvision", "numpy": "numpy", "pandas": "pandas", "scipy": "scipy",
           "sklearn": "scikit-learn", "fairlearn": "fairlearn", "plotly": "plotly", "streamlit": "streamlit",
           "captum": "captum", "safetensors": "safetensors", "tqdm": "tqdm", "PIL": "pillow",
           "umap": "umap-learn", "openTSNE": "openTSNE"}
DEV = {"pytest": "pytest", "pytest_timeout": "pytest-timeout", "playwright": "playwright", "ray": "ray"}


def _names(requirements):
    return {r.split("[")[0].split("=")[0].split(">")[0].split("<")[0].strip().lower() for r in requirements}


@pytest.mark.parametrize("module", sorted(RUNTIME))
def test_runtime_dependency_is_declared_and_imports(module):
    assert RUNTIME[module].lower() in _names(PYPROJECT["project"]["dependencies"])
    importlib.import_module(module)


@pytest.mark.parametrize("module", sorted(DEV))
def test_test_dependency_is_declared_and_imports(module):
    assert DEV[module].lower() in _names(PYPROJECT["project"]["optional-dependencies"]["dev"])
    importlib.import_module(module)


def test_requirement_files_install_only_the_project():
    for name in ("requirements.txt", "requirements-dev.txt"):
        lines = [line.strip() for line in (ROOT / name).read_text().splitlines()
                 if line.strip() and not line.startswith("#")]
        assert lines and all(line.startswith("-e .") for line in lines), name


def test_every_third_party_import_of_the_product_is_declared():
    import ast
    import sys

    declared = set(RUNTIME)
    own = {"fairaudit", "appkit", "app_pages", "tests"}
    optional = {"ray"}  # the Ray job backend is the `ray` extra
    found = set()
    for path in [ROOT / "app.py", *ROOT.glob("fairaudit/**/*.py"), *ROOT.glob("appkit/*.py"),
                 *ROOT.glob("app_pages/*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    third_party = {m for m in found if m not in sys.stdlib_module_names and m not in own and m != "__future__"}
    assert third_party - declared - optional == set()
