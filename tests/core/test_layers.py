"""The layers hold: the core imports neither Prefect nor MLflow nor a layer above it, its tests don't either,
and no test module imports another."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import tickerflow_model

CORE = Path(tickerflow_model.__file__).parent
TESTS = Path(__file__).resolve().parents[1]
ADAPTER = "pyfunc.py"  # the MLflow adapter that travels with each model: the one core file allowed mlflow
ABOVE_THE_CORE = (
    "prefect",
    "mlflow",
    "tickerflow.tasks",
    "tickerflow.flows",
    "tickerflow.reporting",
    "tickerflow.registry",
    "tickerflow.cli",
    "tickerflow.runtime",
)
STAGES = TESTS.parent / "tasks"
# what a stage may not import: the layers that compose the stages, and the command and its process
ABOVE_THE_STAGES = ("tickerflow.flows", "tickerflow.reporting", "tickerflow.cli", "tickerflow.runtime")


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (imports inside functions count)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def reaches_above(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == top or m.startswith(top + ".") for top in ABOVE_THE_CORE))


def test_no_core_module_but_the_pyfunc_adapter_imports_prefect_mlflow_or_a_higher_layer():
    offenders = {p.name: reaches_above(imported_modules(p)) for p in CORE.glob("*.py") if p.name != ADAPTER}
    assert {name: mods for name, mods in offenders.items() if mods} == {}
    assert len(offenders) >= 15  # the glob found the core, not an empty folder


def test_importing_the_whole_core_loads_neither_prefect_nor_mlflow():
    modules = sorted(f"tickerflow_model.{p.stem}" for p in CORE.glob("*.py") if p.name not in (ADAPTER, "__init__.py"))
    code = (
        f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in ('prefect', 'mlflow') or m.startswith(('tickerflow.tasks', 'tickerflow.flows'))))"
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


def test_no_stage_imports_the_flows_the_reporting_the_cli_or_the_runtime():
    stages = sorted(STAGES.glob("*.py"))
    assert len(stages) >= 10  # the glob found the stages
    offenders = {
        p.name: sorted(
            m for m in imported_modules(p) if any(m == top or m.startswith(top + ".") for top in ABOVE_THE_STAGES)
        )
        for p in stages
    }
    assert {name: mods for name, mods in offenders.items() if mods} == {}


def test_core_tests_import_no_prefect_mlflow_or_stage():
    core_tests = sorted((TESTS / "core").glob("test_*.py"))
    assert core_tests
    offenders = {p.name: reaches_above(imported_modules(p)) for p in core_tests}
    assert {name: mods for name, mods in offenders.items() if mods} == {}


def test_no_test_module_imports_another():
    test_modules = {p.stem for p in TESTS.rglob("test_*.py")}
    offenders = {
        str(p.relative_to(TESTS)): sorted(
            m for m in imported_modules(p) if m.split(".")[-1] in test_modules or m == "conftest"
        )
        for p in TESTS.rglob("*.py")
    }
    assert {name: mods for name, mods in offenders.items() if mods} == {}
