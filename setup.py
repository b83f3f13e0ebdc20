"""
Compiles the hot path with mypyc when building a wheel (see
C{build_backend/backend.py}); everything else about the package is in
C{pyproject.toml}.  C{JSONSERVICE_COMPILE=0} builds pure Python, and so
does a machine where the modules do not compile (a warning says why).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent


def _warn(message: str) -> None:
    print(f"jsonservice: {message}; installing the pure-Python modules", file=sys.stderr)


def _compiled_modules() -> tuple[str, ...]:
    # Read from the package without importing it (it needs Twisted).
    spec = importlib.util.spec_from_file_location("_mypyc", HERE / "jsonservice" / "_mypyc.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return tuple(module.COMPILED_MODULES)


def _extensions() -> list[Any]:
    if os.environ.get("JSONSERVICE_COMPILE", "1") == "0":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        _warn("mypyc (from mypy) is not installed, so the core is not compiled")
        return []
    paths = [f"jsonservice/{name}.py" for name in _compiled_modules()]
    try:
        return list(mypycify(paths, opt_level="3"))
    except (Exception, SystemExit) as exc:  # mypy reports type errors by exiting
        _warn(f"mypyc could not compile the core ({exc!r})")
        return []


class OptionalBuildExt(build_ext):
    """Build the compiled modules if this machine can; else keep the pure ones."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no C compiler, a compiler error...
            # All or nothing: a module's stub without the shared library
            # it loads would not import.
            for ext in self.extensions:
                Path(self.get_ext_fullpath(ext.name)).unlink(missing_ok=True)
            self.extensions = []
            _warn(f"the compiled core did not build ({exc})")


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
