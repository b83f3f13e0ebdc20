"""
Compiles the hot path with mypyc when building a wheel (see
C{build_backend/backend.py}); everything else about the package is in
C{pyproject.toml}.  C{JSONSERVICE_COMPILE=0} builds pure Python, and so
does a machine where the modules do not compile (a warning says why,
which pip shows with C{-v}); C{JSONSERVICE_COMPILE=1} fails instead.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent


# JSONSERVICE_COMPILE: "0" pure Python; "1" compiled or fail; unset: compiled if possible.
_WANTED = os.environ.get("JSONSERVICE_COMPILE", "")


# Why the core is not compiled, if it is not.
_PROBLEMS: list[str] = []


def _warn(message: str) -> None:
    _PROBLEMS.append(message)
    print(f"jsonservice: {message}; installing the pure-Python modules", file=sys.stderr)


def _fail_if_required() -> None:
    # (Checked when building, not when pip first runs this file to ask for
    # the build requirements: mypy is not installed yet then.)
    if _WANTED == "1" and _PROBLEMS:
        raise SystemExit(f"jsonservice: {_PROBLEMS[-1]} (JSONSERVICE_COMPILE=1 asks for the compiled core)")


def _compiled_modules() -> tuple[str, ...]:
    # Read from the package without importing it (it needs Twisted).
    spec = importlib.util.spec_from_file_location("_mypyc", HERE / "jsonservice" / "_mypyc.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return tuple(module.COMPILED_MODULES)


def _extensions() -> list[Any]:
    if _WANTED == "0":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        _warn("mypyc (from mypy) is not installed, so the core is not compiled")
        return []
    paths = [f"jsonservice/{name}.py" for name in _compiled_modules()]
    try:
        # Type-checked with its own configuration (build_backend/mypyc.ini),
        # not the project's, which also checks modules needing the extras.
        config = ["--config-file", str(HERE / "build_backend" / "mypyc.ini")]
        return list(mypycify([*config, *paths], opt_level="3"))
    except (Exception, SystemExit) as exc:  # mypy reports type errors by exiting
        _warn(f"mypyc could not compile the core ({exc!r}; pip install -v shows why)")
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
            _fail_if_required()


class CheckedBuildPy(build_py):
    """Stop a build that must compile the core (C{JSONSERVICE_COMPILE=1}) when it cannot."""

    def run(self) -> None:
        _fail_if_required()
        super().run()


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt, "build_py": CheckedBuildPy})
