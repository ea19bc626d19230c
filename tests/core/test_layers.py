"""The layers hold, as docs/ARCHITECTURE.md's table says: one chain, core <- tracking <- tasks <- reporting <- flows
<- runtime <- cli, each package importing only the rooms below it; MLflow imported by tracking alone (and the
core's pyfunc adapter); no package loop; the top layer's functions short and its in-function imports explained;
the tests laid out by layer and no test module importing another."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import tickerflow_model

CORE = Path(tickerflow_model.__file__).parent
ROOT = CORE.parents[1]
TESTS = Path(__file__).resolve().parents[1]
ADAPTER = "pyfunc.py"  # the MLflow adapter that travels with each model: the one core file allowed mlflow

# package -> its folder; the order is the chain, bottom first
PACKAGES = {
    "tickerflow_model": ROOT / "models" / "tickerflow_model",
    "tickerflow.tracking": ROOT / "tickerflow" / "tracking",
    "tickerflow.tasks": ROOT / "tasks",
    "tickerflow.reporting": ROOT / "tickerflow" / "reporting",
    "tickerflow.flows": ROOT / "flows",
    "tickerflow.runtime": ROOT / "tickerflow" / "runtime",
    "tickerflow.cli": ROOT / "tickerflow" / "cli",
}
CHAIN = list(PACKAGES)
# small modules of the tickerflow package itself that every layer above the core may import
LEAVES = ("tickerflow.ui_addresses", "tickerflow.run_log")
# third-party packages a layer may not import (the rest it may): MLflow is tracking's alone
FORBIDDEN_LIBRARIES = {
    "tickerflow_model": ("prefect", "mlflow"),
    "tickerflow.tracking": (),
    "tickerflow.tasks": ("mlflow",),
    "tickerflow.reporting": ("mlflow",),
    "tickerflow.flows": ("mlflow",),
    "tickerflow.runtime": ("mlflow",),
    "tickerflow.cli": ("mlflow",),
}
TOP_LAYER = [p for name, p in PACKAGES.items() if name != "tickerflow_model"] + [ROOT / "tickerflow"]
LONGEST_FUNCTION = 60  # lines, in the top layer


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (imports inside functions count); relative imports resolved
    within the core, the one package that uses them."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                names.add(node.module)
            elif node.level == 1:
                names.add(f"tickerflow_model.{node.module}" if node.module else "tickerflow_model")
    return names


def package_of(module: str) -> str | None:
    """The chain's package a module belongs to, a leaf's own name, or None for a library."""
    for name in [*CHAIN, *LEAVES]:
        if module == name or module.startswith(name + "."):
            return name
    return "tickerflow" if module == "tickerflow" else None


def sources(package: str) -> list[Path]:
    files = sorted(PACKAGES[package].glob("*.py"))
    assert files, f"no modules found for {package}"
    return files


@pytest.mark.parametrize("package", CHAIN)
def test_each_package_imports_only_the_rooms_below_it_and_its_allowed_libraries(package):
    below = set(CHAIN[: CHAIN.index(package)]) | ({package} if package != "tickerflow_model" else set())
    allowed = below | (set(LEAVES) if package != "tickerflow_model" else set())
    offenders = {}
    for path in sources(package):
        if package == "tickerflow_model" and path.name == ADAPTER:
            continue
        bad = sorted(
            m
            for m in imported_modules(path)
            if (package_of(m) is not None and package_of(m) not in allowed | {package})
            or any(m == lib or m.startswith(lib + ".") for lib in FORBIDDEN_LIBRARIES[package])
        )
        if bad:
            offenders[path.name] = bad
    assert offenders == {}


def test_mlflow_is_imported_by_tracking_and_the_pyfunc_adapter_alone():
    importers = sorted(
        str(path.relative_to(ROOT))
        for package in CHAIN
        for path in sources(package)
        if any(m == "mlflow" or m.startswith("mlflow.") for m in imported_modules(path))
    )
    assert importers and all(p.startswith("tickerflow/tracking/") or p.endswith(f"/{ADAPTER}") for p in importers)


def test_the_leaves_import_nothing_of_tickerflow_but_the_config():
    for leaf in LEAVES:
        path = ROOT / (leaf.replace(".", "/") + ".py")
        assert {m for m in imported_modules(path) if m.startswith("tickerflow")} <= {"tickerflow_model.config"}


def test_no_package_loop():
    """The package graph is the chain: no package reaches one above it, directly or through another."""
    edges = {
        package: {package_of(m) for path in sources(package) for m in imported_modules(path)} & set(CHAIN) - {package}
        for package in CHAIN
    }
    for package, targets in edges.items():
        assert all(CHAIN.index(t) < CHAIN.index(package) for t in targets), (package, targets)


def test_importing_the_whole_core_loads_neither_prefect_nor_mlflow():
    modules = sorted(f"tickerflow_model.{p.stem}" for p in CORE.glob("*.py") if p.name not in (ADAPTER, "__init__.py"))
    code = (
        f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in ('prefect', 'mlflow') or m.startswith('tickerflow.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_config_module_loads_the_standard_library_and_pydantic_only():
    """The command line reads defaults and refuses a bad --config with it, before anything heavy loads."""
    code = (
        "import sys\nbefore = set(sys.modules)\nimport tickerflow_model.config\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        # (the interpreter's own build settings module is no third-party package)
        "print(sorted(m for m in new - set(sys.stdlib_module_names) if not m.startswith('_sysconfigdata')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    pydantic_and_its_own = {"pydantic", "pydantic_core", "typing_extensions", "annotated_types", "typing_inspection"}
    assert set(eval(out)) - pydantic_and_its_own == {"tickerflow_model"}


def top_layer_functions():
    for folder in TOP_LAYER:
        for path in sorted(folder.glob("*.py")):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    yield path, node


def test_no_top_layer_function_is_longer_than_sixty_lines():
    long = {
        f"{path.relative_to(ROOT)}:{node.name}": node.end_lineno - node.lineno + 1
        for path, node in top_layer_functions()
        if node.end_lineno - node.lineno + 1 > LONGEST_FUNCTION
    }
    assert long == {}


def test_every_in_function_import_of_the_top_layer_says_why():
    """Imports belong at the top; one inside a function keeps `--help` (or a light module) light, and says so
    in a comment on its line or on the line above the block of imports it belongs to."""
    unexplained = []
    for path, function in top_layer_functions():
        lines = path.read_text().splitlines()
        for node in ast.walk(function):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            row = node.lineno - 1
            # up to the first import of the block (its groups may be apart by a blank line, as isort writes them)
            while row > 0 and (
                lines[row - 1].strip().startswith(("from ", "import "))
                or (not lines[row - 1].strip() and row > 1 and lines[row - 2].strip().startswith(("from ", "import ")))
            ):
                row -= 1
            if (
                "#" not in lines[node.lineno - 1]
                and "#" not in lines[row]
                and not lines[row - 1].strip().startswith("#")
            ):
                unexplained.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert unexplained == []


def test_the_tests_are_laid_out_by_layer():
    folders = {p.name for p in TESTS.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))}
    assert folders == {"core", "tracking", "tasks", "reporting", "flows", "cli", "runtime", "integration"}


def test_core_tests_import_no_prefect_mlflow_or_tickerflow_package():
    core_tests = sorted((TESTS / "core").glob("test_*.py"))
    assert core_tests
    offenders = {
        p.name: sorted(m for m in imported_modules(p) if m.split(".")[0] in ("prefect", "mlflow", "tickerflow"))
        for p in core_tests
    }
    assert {name: mods for name, mods in offenders.items() if mods} == {}


def test_no_test_module_imports_another():
    modules = {p.stem for p in TESTS.rglob("test_*.py")}
    offenders = {
        p.name: sorted(imported_modules(p) & modules) for p in TESTS.rglob("test_*.py") if imported_modules(p) & modules
    }
    assert offenders == {}
