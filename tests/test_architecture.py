"""The package's import graph: no cycles (function-level imports included), a launcher that never
loads a framework, and imports that follow the layers (cli/bench/report → launch → engines →
framework-free basics): engine-process code never reaches up into the launcher, and the launcher
knows no engine's own package, only `engines.spec`/`engines.registry`.

The graph is read from the source with `ast`, so an import hidden inside a function counts as much
as one at the top of a module. `from pkg import sub` is an edge to the submodule `pkg.sub`; any other
`from mod import name` is an edge to `mod`.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "parallel_vision"
FRAMEWORKS = ("torch", "tensorflow", "keras", "jax")


def module_files() -> dict[str, Path]:
    files = {}
    for path in (SRC / PACKAGE).rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        files[name] = path
    return files


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every package module `name` imports, wherever the import statement sits."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            subs = {f"{module}.{alias.name}" for alias in node.names} & known
            found.update(subs)
            if len(subs) < len(node.names):
                found.add(module)
    return {m for m in found if m in known and m != name}


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imports_of(name, path, set(files)) for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_reader_sees_function_level_imports_and_cycles(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("def f():\n    from pkg import b\n")
    known = {"pkg.a", "pkg.b"}
    assert imports_of("pkg.a", tmp_path / "a.py", known) == {"pkg.b"}
    assert cycles({"pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}, "pkg.c": set()}) == [["pkg.a", "pkg.b"]]


def test_no_import_cycles() -> None:
    assert cycles(import_graph()) == []


def test_the_launcher_imports_no_framework() -> None:
    """Everything the parent process runs (CLI, launcher, bench, report) leaves the frameworks unloaded."""
    code = (
        "import sys\n"
        "import parallel_vision.cli, parallel_vision.launch, parallel_vision.bench.runner, parallel_vision.report\n"
        "import parallel_vision.predict.model, parallel_vision.predict.output\n"
        "import parallel_vision.explain.run, parallel_vision.explain.faithfulness, parallel_vision.explain.sample\n"
        "import parallel_vision.launch.child\n"
        "from parallel_vision.engines import registry\n"
        "assert sorted(registry.engines()) == ['jax', 'tensorflow', 'torch']\n"
        f"print(sorted(m for m in {FRAMEWORKS!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("package", ["launch", "data", "results", "report", "bench", "eda", "cli", "predict",
                                     "explain"])
def test_framework_free_packages_never_import_a_framework(package: str) -> None:
    """No module of these packages names torch, TensorFlow, Keras or JAX in any import statement."""
    offenders = []
    for path in (SRC / PACKAGE / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FRAMEWORKS]
    assert offenders == []


def test_every_framework_of_the_strategy_table_has_an_engine_package() -> None:
    from parallel_vision import strategies
    from parallel_vision.engines import registry

    assert sorted(registry.engines()) == sorted(strategies.frameworks())
    for name, spec in registry.engines().items():
        assert spec.strategies == strategies.strategies_of(name)
    for spec in registry.engines().values():
        module, _, _function = spec.entry.partition(":")
        assert (SRC / Path(*module.split("."))).with_suffix(".py").exists(), spec.entry


def test_no_call_of_our_own_code_passes_more_than_five_arguments_by_position() -> None:
    """Long positional calls are where arguments get swapped silently: past five, name them."""
    trees = {path: ast.parse(path.read_text()) for path in (SRC / PACKAGE).rglob("*.py")}
    ours = {node.name for tree in trees.values() for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    offenders = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and len(node.args) > 5:
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", "")
                if name in ours:
                    offenders.append(f"{path.relative_to(SRC)}:{node.lineno} {name}")
    assert offenders == []


#: Each engine's own package: the code that runs inside its engine process (it may import the framework).
ENGINE_PACKAGES = tuple(f"{PACKAGE}.engines.{name}" for name in ("torch", "tensorflow", "jax", "keras"))
#: The layers above the engines: an engine process never reaches up into them. (`explain.sample` and
#: `explain.faithfulness` are numpy basics the engines' explain children use; `explain.run` starts those children.)
ABOVE_ENGINES = tuple(f"{PACKAGE}.{name}" for name in ("launch", "cli", "bench", "report", "predict", "explain.run"))


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Imports that run against the layers (function-level imports included): `engines/` reaching up into
    `launch`, `cli`, `bench` or `report`, and `launch/` reaching into an engine's own package (only the
    framework-free engine modules such as `engines.spec` and `engines.registry` are allowed there)."""
    found = []
    for module, imported in sorted(graph.items()):
        if _within(module, (f"{PACKAGE}.engines",)):
            found += [f"{module} -> {m}" for m in sorted(imported) if _within(m, ABOVE_ENGINES)]
        if _within(module, (f"{PACKAGE}.launch",)):
            found += [f"{module} -> {m}" for m in sorted(imported) if _within(m, ENGINE_PACKAGES)]
    return found


def test_the_layer_checker_sees_an_upward_and_a_sideways_import() -> None:
    graph = {
        f"{PACKAGE}.engines.torch.dist": {f"{PACKAGE}.launch.ports", f"{PACKAGE}.errors"},
        f"{PACKAGE}.engines.levers": {f"{PACKAGE}.cli"},
        f"{PACKAGE}.launch.cluster": {f"{PACKAGE}.engines.tensorflow.cluster", f"{PACKAGE}.engines.spec"},
        f"{PACKAGE}.launch.run": {f"{PACKAGE}.engines.registry", f"{PACKAGE}.engines.tensorflow_like"},
    }
    assert layer_violations(graph) == [
        f"{PACKAGE}.engines.levers -> {PACKAGE}.cli",
        f"{PACKAGE}.engines.torch.dist -> {PACKAGE}.launch.ports",
        f"{PACKAGE}.launch.cluster -> {PACKAGE}.engines.tensorflow.cluster",
    ]


def test_imports_follow_the_layers() -> None:
    """cli/bench/report → launch → engines → framework-free basics: never the other way round."""
    assert layer_violations(import_graph()) == []
