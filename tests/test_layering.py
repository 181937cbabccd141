"""The floors of the house (docs/ARCHITECTURE.md): who may import whom.

    dumpkit        the ground floor: errors, units, file I/O, the CLI kit
    native         checksums and page scans (C, with a pure-Python fallback)
    meminfo_abi    every binary layout and the readers of ABI structures
    s390_machine   the simulated machine
    kexec_s390, zipl_sadump, vmcore   the stages

Imports at module level point down only, never in a cycle; a stage reaches the
simulator only inside the functions that act on a machine.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ["dumpkit", "native", "meminfo_abi", "s390_machine", "kexec_s390", "zipl_sadump", "vmcore"]
# what each package may import at module level, beside itself
ALLOWED = {
    "dumpkit": set(),
    "native": {"dumpkit"},
    "meminfo_abi": {"dumpkit", "native"},
    "s390_machine": {"dumpkit", "native", "meminfo_abi"},
    "vmcore": {"dumpkit", "native", "meminfo_abi"},
    "kexec_s390": {"dumpkit", "native", "meminfo_abi"},
    "zipl_sadump": {"dumpkit", "native", "meminfo_abi", "vmcore"},
}
# the modules whose work is acting on a simulated machine: the dumper's IPL, kdump from the
# dump device, the kdump kernel's side; the CLIs import them only in the commands that need them
ACTS_ON_A_MACHINE = {"zipl_sadump.ipl", "zipl_sadump.kdumpdev", "vmcore.kdump"}


def _modules():
    for pkg in PACKAGES:
        for dirpath, _, files in os.walk(os.path.join(ROOT, pkg)):
            for f in files:
                if f.endswith(".py"):
                    path = os.path.join(dirpath, f)
                    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                    yield rel.removesuffix(".__init__"), path


def _top_level_imports(path: str) -> set[str]:
    """Modules imported at module level (not in functions, not under TYPE_CHECKING)."""
    tree = ast.parse(open(path).read(), path)
    found: set[str] = set()

    def visit(nodes):
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.If):
                test = ast.unparse(node.test)
                if "TYPE_CHECKING" not in test:
                    visit(node.body)
                    visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for h in node.handlers:
                    visit(h.body)
                visit(node.orelse)
                visit(node.finalbody)

    visit(tree.body)
    return found


def _graph():
    mods = dict(_modules())
    graph = {}
    for mod, path in mods.items():
        deps = set()
        for name in _top_level_imports(path):
            while name and name not in mods:
                name = name.rpartition(".")[0]
            if name and name != mod:
                deps.add(name)
        graph[mod] = deps
    return graph


def test_imports_point_down_the_floors():
    wrong = []
    for mod, deps in _graph().items():
        pkg = mod.split(".")[0]
        for dep in deps:
            other = dep.split(".")[0]
            allowed = ALLOWED[pkg] | ({"s390_machine"} if mod in ACTS_ON_A_MACHINE else set())
            if other != pkg and other not in allowed:
                wrong.append(f"{mod} imports {dep}")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def walk(node, stack):
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(" -> ".join(stack[stack.index(dep):] + [dep]))
            elif dep not in state:
                walk(dep, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node, [])
    assert not cycles, "\n".join(cycles)


def test_vmcore_cli_help_imports_no_simulator():
    for module in ("vmcore.cli", "zipl_sadump.cli", "kexec_s390.cli"):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", module, "--help"],
                              capture_output=True, text=True, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr[-2000:]
        imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line]
        assert "dumpkit.clikit" in imported                 # the check sees our imports at all
        assert not [m for m in imported if m.split(".")[0] == "s390_machine"], module
