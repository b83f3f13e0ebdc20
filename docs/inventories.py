"""
Write the intersphinx inventories C{make docs} gives pydoctor, offline.

pydoctor links C{L{None}}, C{L{bytes}} or C{L{Deferred}} to the Python and
Twisted documentation through Sphinx inventories (C{objects.inv}), which
it would normally download.  This builds equivalent inventories from what
is installed instead: the Python builtins, and every module, class,
function and method of the installed Twisted (found by parsing its source,
without importing it).  The links point at the online documentation.

    python docs/inventories.py OUTPUT_DIR
"""

from __future__ import annotations

import ast
import builtins
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

PYTHON_DOCS = "https://docs.python.org/3/"
TWISTED_DOCS = "https://docs.twisted.org/en/stable/api/"

Entry = tuple[str, str, str]  # name, domain:role, uri


def write_inventory(path: Path, project: str, version: str, entries: list[Entry]) -> None:
    """Write a Sphinx inventory, version 2."""
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        f"# Version: {version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    body = "".join(f"{name} {role} 1 {uri} -\n" for name, role, uri in sorted(set(entries)))
    path.write_bytes(header.encode() + zlib.compress(body.encode()))


def python_entries() -> Iterator[Entry]:
    """The builtins: constants, exceptions, types and functions."""
    for name in ("None", "True", "False", "NotImplemented", "Ellipsis"):
        yield name, "py:data", f"library/constants.html#{name}"
    for name in dir(builtins):
        obj = getattr(builtins, name)
        if name.startswith("_"):
            continue
        if isinstance(obj, type) and issubclass(obj, BaseException):
            yield name, "py:exception", f"library/exceptions.html#{name}"
        elif isinstance(obj, type):
            page = "stdtypes" if name in {"bytes", "str", "list", "dict", "set", "tuple"} else "functions"
            yield name, "py:class", f"library/{page}.html#{name}"
        elif callable(obj):
            yield name, "py:function", f"library/functions.html#{name}"


def twisted_entries(package: Path) -> Iterator[Entry]:
    """Everything pydoctor documents in Twisted, at pydoctor's URLs."""
    root = package.parent
    for source in sorted(package.rglob("*.py")):
        parts = source.relative_to(root).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield module, "py:module", f"{module}.html"
        try:
            tree = ast.parse(source.read_bytes())
        except (SyntaxError, ValueError):
            continue
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                name = f"{module}.{node.name}"
                yield name, "py:class", f"{name}.html"
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        yield f"{name}.{item.name}", "py:method", f"{name}.html#{item.name}"
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield f"{module}.{node.name}", "py:function", f"{module}.html#{node.name}"
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, ast.Name):
                        yield f"{module}.{target.id}", "py:attribute", f"{module}.html#{target.id}"


def main(output: str) -> None:
    """Write C{python.inv} and C{twisted.inv} into C{output}."""
    import twisted

    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    write_inventory(out / "python.inv", "Python", version, list(python_entries()))
    package = Path(twisted.__file__).parent
    write_inventory(out / "twisted.inv", "Twisted", twisted.__version__, list(twisted_entries(package)))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "build/inventories")
