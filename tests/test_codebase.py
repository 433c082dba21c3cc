"""Rules of the codebase's shape: no import cycles, light imports, public library APIs, declared dependencies."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("dmi", "tune")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Modules of ours that ``name`` imports anywhere in its body, with the packages that loading them loads."""
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            targets |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    out = set()
    for target in targets:
        parts = target.split(".")
        out |= {".".join(parts[:i]) for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in known}
    return out - {name}


def test_no_import_cycle_among_our_modules_counting_function_level_imports() -> None:
    known = modules()
    graph = {name: imported(name, path, known) for name, path in known.items()}
    for start in graph:
        seen, stack = set(), [(start, [start])]
        while stack:
            node, trail = stack.pop()
            for nxt in graph[node]:
                assert nxt != start, f"import cycle: {' -> '.join([*trail, nxt])}"
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))


def loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    return set(done.stdout.split())


def test_the_estimator_loads_no_sweep_or_tracking_library() -> None:
    assert not loaded_after("from dmi import DiffusionMI; DiffusionMI") & {"ray", "mlflow", "optuna"}


def test_the_command_lines_load_no_torch_for_their_help() -> None:
    assert "torch" not in loaded_after("import dmi.cli, tune.cli")


def test_tune_overrides_no_private_ray_method() -> None:
    private = re.compile(r"\b(_handle|_get_report_dict|_local_tuner)\b")
    hits = [str(p) for p in (ROOT / "tune").rglob("*.py") if private.search(p.read_text())]
    assert not hits, hits


def test_no_blanket_deprecation_filter() -> None:
    assert not re.search(r"ignore::\w*(Deprecation|Future)Warning", (ROOT / "pyproject.toml").read_text())
    blanket = re.compile(r"filterwarnings\(\s*\"ignore\",\s*category=(Deprecation|Future)Warning\s*\)")
    hits = [str(p) for package in PACKAGES for p in (ROOT / package).rglob("*.py") if blanket.search(p.read_text())]
    assert not hits, hits


def test_every_third_party_import_is_a_declared_dependency() -> None:
    declared = [d for d in importlib.metadata.requires("dmi") or [] if "extra ==" not in d]
    names = {re.split(r"[\s<>=!\[;(]", d, maxsplit=1)[0].lower().replace("_", "-") for d in declared}
    distributions = importlib.metadata.packages_distributions()
    missing = set()
    for path in modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                tops = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                tops = {node.module.split(".")[0]}
            else:
                continue
            for top in tops - set(PACKAGES) - set(sys.stdlib_module_names):
                owners = {d.lower().replace("_", "-") for d in distributions.get(top, [top])}
                if not owners & names:
                    missing.add(f"{top} ({path.relative_to(ROOT)})")
    assert not missing, sorted(missing)
