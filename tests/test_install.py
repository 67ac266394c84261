"""Every package the product imports is declared in pyproject.toml and importable on a fresh install."""

from __future__ import annotations

import importlib
import importlib.util
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
DEV = {"pytest": "pytest", "pytest_timeout": "pytest-timeout", "playwright": "playwright", "ray": "ray", "ruff": "ruff"}


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


# The optional paths README names (the spelling README uses -> the import path behind it), and the browser
# test's driver. Each must import: a broken optional path fails here, not in front of a user.
README_PATHS = {"umap-learn": "umap", "openTSNE": "openTSNE", "captum": "captum.attr", "fairlearn": "fairlearn.metrics",
                "plotly": "plotly.express", "Ray": "ray", "safetensors": "safetensors.torch",
                "Playwright": "playwright.sync_api"}
ALWAYS = {"umap-learn", "openTSNE", "captum", "fairlearn", "plotly", "Playwright"}


def test_every_optional_path_named_in_readme_imports():
    readme = (ROOT / "README.md").read_text(encoding="utf-8").lower()
    named = {name for name in README_PATHS if name.lower() in readme}
    assert {"umap-learn", "openTSNE", "captum", "fairlearn", "plotly"} <= named  # README still names them
    for name in sorted(named | ALWAYS):
        importlib.import_module(README_PATHS[name])


def _require_call(node) -> bool:
    """``require("module", ...)`` of :mod:`fairaudit.optional`."""
    import ast

    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "require"
            and bool(node.args) and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str))


def _lazy_imports():
    """``(file, module, names)`` of every third-party import inside a function of the product (``import``,
    ``from ... import`` or :func:`fairaudit.optional.require`): the optional paths, imported only when a user
    takes them."""
    import ast
    import sys

    own = {"fairaudit", "appkit", "app_pages", "tests"}
    found = []
    for path in [ROOT / "app.py", *ROOT.glob("fairaudit/**/*.py"), *ROOT.glob("appkit/*.py"),
                 *ROOT.glob("app_pages/*.py")]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                if isinstance(node, ast.Import):
                    pairs = [(a.name, ()) for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    pairs = [(node.module, tuple(a.name for a in node.names))]
                elif isinstance(node, ast.Attribute) and _require_call(node.value):  # require("m", ...).Name
                    pairs = [(node.value.args[0].value, (node.attr,))]
                elif _require_call(node):
                    pairs = [(node.args[0].value, ())]
                else:
                    continue
                for module, names in pairs:
                    top = module.split(".")[0]
                    if top not in own and top not in sys.stdlib_module_names and top != "__future__":
                        found.append((str(path.relative_to(ROOT)), module, names))
    return found


def test_every_lazily_imported_optional_path_imports():
    found = _lazy_imports()
    modules = {module.split(".")[0] for _, module, _ in found}
    assert {"umap", "openTSNE", "captum"} <= modules  # the projections' and explainers' optional imports
    for where, module, names in found:
        imported = importlib.import_module(module)
        for name in names:
            assert name == "*" or hasattr(imported, name) or importlib.util.find_spec(f"{module}.{name}"), \
                f"{where}: `from {module} import {name}` fails"


def test_optional_package_hints_match_the_declared_distributions():
    from fairaudit.optional import PACKAGES

    extras = PYPROJECT["project"]["optional-dependencies"]
    declared = _names(PYPROJECT["project"]["dependencies"]) | _names(extras["ray"])
    assert {p.lower() for p in PACKAGES.values()} <= declared
