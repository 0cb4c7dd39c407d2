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
MODULES = [
    m[: -len(".__init__")] if m.endswith(".__init__") else m for m in MODULES if not m.endswith("__main__")
]


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
                if (SRC.parent / Path(*candidate.split("."))).with_suffix(".py").is_file() or (
                    SRC.parent / Path(*candidate.split(".")) / "__init__.py"
                ).is_file():
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
                cycle = stack[stack.index(dep) :] + [dep]
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
    core = [m for m in graph if not m.startswith(("smoothcache.zoo", "smoothcache.cli"))]
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
    long = {
        str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400
    }
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
    packages = [f"{p.parent.name}/" for p in SRC.glob("*/__init__.py")]
    files = sorted([p.name for p in SRC.glob("*.py") if p.name != "__init__.py"] + packages)
    assert sorted(listed) == files


CORE = [p for p in SRC.rglob("*.py") if "zoo" not in p.relative_to(SRC).parts]


def test_no_public_name_is_defined_in_two_core_modules():
    defined: dict[str, list[str]] = {}
    for path in CORE:
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names = [node.name]
            elif isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names = [node.target.id]
            else:
                continue
            for name in names:
                if not name.startswith("_"):
                    defined.setdefault(name, []).append(str(path.relative_to(SRC)))
    assert {n: where for n, where in defined.items() if len(where) > 1 and n != "logger"} == {}


def _significant(path: Path) -> list[tuple[int, str]]:
    """(line number, text with white space folded) of the lines that carry code: no blanks, comments, imports,
    docstrings or lone brackets."""
    tree = ast.parse(path.read_text())
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            skip.update(range(node.lineno, node.end_lineno + 1))
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            skip.update(range(body[0].lineno, body[0].end_lineno + 1))
    out = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        text = " ".join(line.split())
        if (
            number in skip
            or not text
            or text.startswith("#")
            or text in ("(", ")", "[", "]", "{", "}", "),", "],")
        ):
            continue
        out.append((number, text))
    return out


def test_no_run_of_six_code_lines_is_repeated_in_the_core():
    seen: dict[tuple[str, ...], str] = {}
    repeats = []
    for path in CORE:
        lines = _significant(path)
        for i in range(len(lines) - 5):
            window = tuple(text for _, text in lines[i : i + 6])
            where = f"{path.relative_to(SRC)}:{lines[i][0]}"
            if (
                window in seen
                and seen[window].split(":")[0] != where.split(":")[0]
                or window in seen
                and abs(int(seen[window].split(":")[1]) - lines[i][0]) >= 6
            ):
                repeats.append((seen[window], where))
            seen.setdefault(window, where)
    assert repeats == []


def test_no_test_imports_a_private_name():
    tests = Path(__file__).resolve().parent
    private = []
    for path in sorted(tests.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("smoothcache"):
                private += [
                    f"{path.name}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")
                ]
    assert private == []
