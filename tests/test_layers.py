"""The package's imports point down its layers, with no cycles and none hidden in functions.

Layers (``docs/overview.md``): configuration and persistence, then data, then models (the SSL
and the baselines), then sequential Monte Carlo, then inference and evaluation, then the
estimator, then the front-ends. A module may import from its own layer or below. Every import
of a package module sits at the top of its module: a function-level import is how a cycle
hides, so none is allowed.
"""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "pyro_ssl"

LAYERS = [
    ("version", "config", "io", "runtime"),
    ("data",),
    ("model", "baselines", "coherence"),
    ("smc",),
    ("infer", "evaluation"),
    ("estimator", "ensemble"),
    ("diagnostics", "plots", "report", "cli", "distributed", "api", "__init__"),
]


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _layer(module: str) -> int:
    head = module.split(".")[0]
    for i, names in enumerate(LAYERS):
        if head in names:
            return i
    raise AssertionError(f"pyro_ssl.{module} is in no layer; add it to LAYERS in {__file__}")


def _imports(path: Path):
    """``(target module, line, top_level)`` for every import of a pyro_ssl module in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = _module_name(path)
    package = me.split(".") if path.name == "__init__.py" else me.split(".")[:-1]
    top = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1] if node.level > 1 else list(package)
                mod = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("pyro_ssl"):
                mod = node.module[len("pyro_ssl"):].lstrip(".")
            else:
                continue
            for alias in node.names:  # "from . import io" names a module
                sub = f"{mod}.{alias.name}" if mod else alias.name
                targets.append(sub if (PKG / sub.replace(".", "/")).with_suffix(".py").exists()
                               or (PKG / sub.replace(".", "/")).is_dir() else mod)
        elif isinstance(node, ast.Import):
            targets = [a.name[len("pyro_ssl."):] for a in node.names if a.name.startswith("pyro_ssl.")]
        for t in targets:
            yield (t or "__init__"), node.lineno, id(node) in top


def _graph():
    edges = {}
    for path in PKG.rglob("*.py"):
        me = _module_name(path)
        edges[me] = [(t, line, top) for t, line, top in _imports(path) if t != me]
    return edges


def test_imports_point_down_the_layers():
    bad = []
    for me, targets in _graph().items():
        for t, line, _ in targets:
            if _layer(t) > _layer(me):
                bad.append(f"pyro_ssl.{me}:{line} imports pyro_ssl.{t} (layer {_layer(t)} > {_layer(me)})")
    assert not bad, "\n".join(bad)


def test_no_function_level_package_imports():
    bad = [f"pyro_ssl.{me}:{line} imports pyro_ssl.{t} inside a function or block"
           for me, targets in _graph().items() for t, line, top in targets if not top]
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    graph = {me: {t for t, _, _ in ts if t in _graph_keys()} for me, ts in _graph().items()}
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(m):] + [m]))
            if m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)


def _graph_keys():
    return {_module_name(p) for p in PKG.rglob("*.py")}


def test_the_checker_sees_a_planted_upward_import(tmp_path):
    """Power check: an upward, function-level import in a copy of a module is reported."""
    src = (PKG / "model.py").read_text(encoding="utf-8")
    planted = PKG / "model.py"
    fake = tmp_path / "model.py"
    fake.write_text(src + "\n\ndef _f():\n    from .estimator import SSL\n", encoding="utf-8")
    found = [(t, top) for t, _, top in _imports_as(fake, planted)]
    assert ("estimator", False) in found


def _imports_as(fake: Path, where: Path):
    """:func:`_imports` of ``fake``'s text as if it lived at ``where``."""
    import unittest.mock as mock

    real = Path.read_text
    with mock.patch.object(Path, "read_text", lambda self, *a, **k: real(fake, *a, **k) if self == where else real(self, *a, **k)):
        return list(_imports(where))
