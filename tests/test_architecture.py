"""The package's shape: no import cycles, every module imports on its own, no module over 400 lines,
and the core never imports the evaluation code (``smoothcache.zoo``)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "smoothcache"
MODULES = sorted(
    "smoothcache." + ".".join(p.relative_to(SRC).with_suffix("").parts).replace(".__init__", "").rstrip(".")
    for p in SRC.rglob("*.py")
)
MODULES = [m[:-len(".__init__")] if m.endswith(".__init__") else m for m in MODULES]


def _module_of(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every smoothcache module ``path`` imports, at module level or inside functions."""
    module = _module_of(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("smoothcache"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("smoothcache"):
                continue
            found.add(target)
            for alias in node.names:  # "from . import zoo" names a module
                candidate = f"{target}.{alias.name}"
                if (SRC.parent / Path(*candidate.split("."))).with_suffix(".py").is_file() or \
                        (SRC.parent / Path(*candidate.split(".")) / "__init__.py").is_file():
                    found.add(candidate)
    found.discard(module)
    return found


def _graph() -> dict[str, set[str]]:
    graph = {_module_of(p): _imports(p) for p in SRC.rglob("*.py")}
    # importing a submodule runs its packages' __init__ first; those edges are not cycles of ours
    return {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}


def test_the_import_graph_has_no_cycle():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):] + [dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if state.get(dep) is None:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_the_core_does_not_import_the_evaluation_code():
    graph = _graph()
    core = [m for m in graph if not m.startswith("smoothcache.zoo") and m not in ("smoothcache.cli",)]
    offenders = {m: sorted(d for d in graph[m] if d.startswith("smoothcache.zoo")) for m in core}
    assert {m: d for m, d in offenders.items() if d} == {}


def test_every_module_imports_on_its_own():
    script = (
        "import importlib, sys\n"
        f"modules = {MODULES!r}\n"
        "failed = []\n"
        "for name in modules:\n"
        "    for loaded in [m for m in sys.modules if m == 'smoothcache' or m.startswith('smoothcache.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as err:\n"
        "        failed.append(f'{name}: {type(err).__name__}: {err}')\n"
        "print('\\n'.join(failed))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


def test_the_graph_sees_relative_imports():
    """Control for the cycle test: the parser really finds the edges it checks."""
    graph = _graph()
    assert "smoothcache.hooks" in graph["smoothcache.cache"]
    assert "smoothcache.profile" in graph["smoothcache.planning"]
    assert "smoothcache.cache" in graph["smoothcache.zoo.demo"]  # ..cache
    assert "smoothcache.zoo.digits_net" in graph["smoothcache.zoo.digits_eval"]


def test_the_readme_architecture_lists_every_module_once():
    import re

    readme = (SRC.parents[1] / "README.md").read_text()
    section = readme.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    listed = []
    for line in section.splitlines():
        if line.startswith("| `"):
            listed += re.findall(r"`([\w/]+(?:\.py)?/?)`", line.split("|")[1])
    files = sorted([p.name for p in SRC.glob("*.py") if p.name != "__init__.py"] + ["zoo/"])
    assert sorted(listed) == files
