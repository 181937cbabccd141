"""What `pip install .` gives a user (issue 14): every run-time import declared, every package shipped."""
from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import sys
import tomllib

from tests.conftest import ROOT

with open(os.path.join(ROOT, "pyproject.toml"), "rb") as _fh:
    PYPROJECT = tomllib.load(_fh)
PACKAGES = PYPROJECT["tool"]["setuptools"]["packages"]
OWN = {p.split(".")[0] for p in PACKAGES}


def _requirement_name(req: str) -> str:
    return re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0].lower().replace("_", "-")


def _module_files():
    for pkg in PACKAGES:
        folder = os.path.join(ROOT, *pkg.split("."))
        for name in sorted(os.listdir(folder)):
            if name.endswith(".py"):
                yield pkg, os.path.join(folder, name)


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(t, ast.Name) and t.id in ("ImportError", "ModuleNotFoundError") for t in types)


def _imports(path: str) -> set[tuple[str, bool]]:
    """(top-level module, optional) of every absolute import in a file: optional where the import
    is guarded by `except ImportError` or made only when a function runs (an extra's feature)."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(_catches_import_error(h) for h in node.handlers):
            for inner in node.body:
                guarded.update(id(n) for n in ast.walk(inner))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            guarded.update(id(n) for n in ast.walk(node))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update((a.name.split(".")[0], id(node) in guarded) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.module.split(".")[0], id(node) in guarded))
    return found


def test_every_run_time_import_is_declared():
    """A module the product imports is the standard library, the suite itself, a declared
    dependency, or (behind `except ImportError`, or inside a function) an optional extra's."""
    dists = importlib.metadata.packages_distributions()
    required = {_requirement_name(r) for r in PYPROJECT["project"]["dependencies"]}
    extras = PYPROJECT["project"]["optional-dependencies"]
    optional = {_requirement_name(r) for name in ("lzo", "snappy", "zstd", "mount", "drgn") for r in extras[name]}
    undeclared = []
    for _pkg, path in _module_files():
        for module, is_guarded in _imports(path):
            if module in sys.stdlib_module_names or module in OWN or module == "__future__":
                continue
            names = {d.lower().replace("_", "-") for d in dists.get(module, [module])}
            if names & required or (is_guarded and names & optional):
                continue
            undeclared.append(f"{os.path.relpath(path, ROOT)} imports {module} ({', '.join(sorted(names))})")
    assert not undeclared, "undeclared run-time imports:\n" + "\n".join(undeclared)


def test_every_declared_dependency_is_used():
    used = set()
    dists = importlib.metadata.packages_distributions()
    for _pkg, path in _module_files():
        for module, _ in _imports(path):
            used.update(d.lower().replace("_", "-") for d in dists.get(module, []))
    unused = {_requirement_name(r) for r in PYPROJECT["project"]["dependencies"]} - used
    assert not unused, f"declared but never imported at run time: {sorted(unused)}"


def test_every_package_folder_is_shipped():
    on_disk = set()
    for top in OWN:
        for base, dirs, files in os.walk(os.path.join(ROOT, top)):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            if "__init__.py" in files:
                on_disk.add(os.path.relpath(base, ROOT).replace(os.sep, "."))
    assert on_disk == set(PACKAGES)


def test_constraints_pin_every_run_time_dependency():
    pins = {}
    for name in ("ci.txt", "lowest.txt"):
        with open(os.path.join(ROOT, "constraints", name)) as fh:
            pins[name] = {_requirement_name(line): line.split("==")[1].strip()
                          for line in fh if "==" in line and not line.startswith("#")}
    required = {_requirement_name(r) for r in PYPROJECT["project"]["dependencies"]}
    assert required <= set(pins["ci.txt"]) and required == set(pins["lowest.txt"])
    for req in PYPROJECT["project"]["dependencies"]:     # the lowest pins are the declared lower bounds
        lower = re.search(r">=([\w.]+)", req).group(1)
        assert pins["lowest.txt"][_requirement_name(req)] == lower, req
