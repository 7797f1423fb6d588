"""Imports follow the layers: the intermediate form and the engines never reach up.

Every ``import`` statement of a layer's modules is read with `ast` (those inside functions and
``if TYPE_CHECKING:`` blocks included) and checked against what the layer may import; see the
README's Architecture section for the table.
"""

from __future__ import annotations

import ast
import pathlib
import sys

import pytest

GUIDED = pathlib.Path(__file__).resolve().parent.parent / "guided"

# layer -> (its files, the guided modules it may import, the third-party packages it may import)
LAYERS = {
    "base": (["errors.py", "vocab.py"], ("guided.errors", "guided.vocab"), ()),
    "ir": (["ir"], ("guided.ir", "guided.errors"), ("numpy",)),
    # guided._native is the engine layer's compiled core (src/guided_native)
    "engine": (["engine"], ("guided.engine", "guided._native", "guided.ir", "guided.vocab", "guided.errors"),
               ("numpy",)),
    "frontends": (["frontends"], ("guided.frontends", "guided.ir", "guided.errors"),
                  ("numpy", "lark", "interegular", "referencing", "jsonschema", "pydantic")),
}


def _files(parts: list[str]) -> list[pathlib.Path]:
    out = []
    for part in parts:
        path = GUIDED / part
        out.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return out


def _module_of(path: pathlib.Path) -> str:
    rel = path.relative_to(GUIDED.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: pathlib.Path) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in ``path``, at any depth."""
    return imports_in(path.read_text(), _module_of(path), path.name == "__init__.py")


def imports_in(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """`imports_of` for the source of ``module``."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name == "__future__":
                continue
            # ``from guided.ir import dfa``: the imported names may be modules themselves.
            found += [(node.lineno, f"{name}.{alias.name}" if name in _PACKAGES else name) for alias in node.names]
    return found


_PACKAGES = ("guided", "guided.ir", "guided.engine", "guided.engine.cfg", "guided.frontends")


def _allowed(name: str, guided_ok: tuple[str, ...], third_party: tuple[str, ...]) -> bool:
    top = name.split(".")[0]
    if top == "guided":
        return any(name == ok or name.startswith(ok + ".") for ok in guided_ok)
    return top in sys.stdlib_module_names or top in third_party


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_layer_imports_only_what_it_may(layer):
    parts, guided_ok, third_party = LAYERS[layer]
    files = _files(parts)
    assert files
    bad = [f"{path.relative_to(GUIDED.parent)}:{line} imports {name}"
           for path in files for line, name in imports_of(path) if not _allowed(name, guided_ok, third_party)]
    assert not bad, "imports against the layering:\n  " + "\n  ".join(bad)


def test_the_check_sees_imports_inside_functions():
    """The checker itself: lazy imports inside a function are found, relative ones resolved."""
    source = "def f():\n    import torch\n    from guided.compiler import compile\n    from . import matcher\n"
    names = [name for _, name in imports_in(source, "guided.engine.probe", is_package=False)]
    assert names == ["torch", "guided.compiler", "guided.engine.matcher"]
    _, guided_ok, third_party = LAYERS["engine"]
    assert [_allowed(name, guided_ok, third_party) for name in names] == [False, False, True]
