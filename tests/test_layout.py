"""The package's layout: each stage imports only the stages below it, and no two modules import
each other, even lazily inside a function (docs/explanations/architecture.md)."""

import ast
from pathlib import Path

import cnnlab

PACKAGE = Path(cnnlab.__file__).parent

# Bottom to top: a module may import its own stage's modules (without cycles) and any stage below.
STAGES = [
    ("cnnlab.errors", "cnnlab.files"),
    ("cnnlab.data",),
    ("cnnlab.models",),
    ("cnnlab.handwriting",),  # reads photos; never trains, never asks a model itself (cnnlab.handwriting.asking)
    ("cnnlab.reporting",),
    ("cnnlab.training",),  # its train_reader and train_sequence train handwriting's networks again
    ("cnnlab.using", "cnnlab.reproduce"),
    ("cnnlab.serving", "cnnlab.bench"),
    ("cnnlab.cli_help", "cnnlab.cli_app", "cnnlab.cli_study", "cnnlab.cli", "cnnlab.__main__", "cnnlab"),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def stage(module: str) -> int:
    for rank, prefixes in enumerate(STAGES):
        if any(module == p or (p != "cnnlab" and module.startswith(p + ".")) for p in prefixes):
            return rank
    raise AssertionError(f"{module} belongs to no stage: add it to STAGES and to the architecture page")


def imports_of(path: Path) -> set[str]:
    """Every cnnlab module ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "cnnlab"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "cnnlab":
            for alias in node.names:  # `from cnnlab.reporting import plots` imports a module
                sub = f"{node.module}.{alias.name}"
                found.add(sub if (PACKAGE.parent / (sub.replace(".", "/") + ".py")).exists() else node.module)
    return found


GRAPH = {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def test_every_import_goes_to_the_same_stage_or_one_below():
    upward = [f"{m} imports {i}" for m, imported in GRAPH.items() for i in imported
              if i in GRAPH and stage(i) > stage(m)]
    assert not upward


def test_no_import_cycles():
    def cycle_from(start, node, seen):
        for nxt in GRAPH.get(node, ()):
            if nxt == start:
                return [node, nxt]
            if nxt not in seen and nxt != "cnnlab" and not start.startswith(nxt + "."):
                seen.add(nxt)
                if found := cycle_from(start, nxt, seen):
                    return [node, *found]
        return None

    # A package's __init__ re-exporting its own modules is not a cycle; a module importing its parent is.
    cycles = [cycle_from(m, m, {m}) for m in GRAPH]
    assert not [c for c in cycles if c]
