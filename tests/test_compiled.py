"""
The compiled build of the hot path (mypyc): which modules it compiles,
and whether this install runs them.  `make test` runs the core's tests
twice: on the sources, and against the compiled build in build/compiled
(with JSONSERVICE_EXPECT_COMPILED=1), where the second test below makes
sure the compiled modules are really the ones running.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
from pathlib import Path

import pytest

import jsonservice
from jsonservice._mypyc import COMPILED_MODULES, compiled

EXTENSIONS = tuple(importlib.machinery.EXTENSION_SUFFIXES)


def test_compiled_says_whether_the_core_modules_are_extension_modules() -> None:
    files = [importlib.import_module(f"jsonservice.{name}").__file__ or "" for name in COMPILED_MODULES]
    assert compiled() is all(f.endswith(EXTENSIONS) for f in files)
    # All or nothing: a build never mixes compiled and pure core modules.
    assert len({f.endswith(EXTENSIONS) for f in files}) == 1


def test_every_listed_module_has_its_pure_source() -> None:
    package = Path(jsonservice.__file__).parent
    for name in COMPILED_MODULES:
        assert (package / f"{name}.py").is_file(), name


@pytest.mark.skipif(
    os.environ.get("JSONSERVICE_EXPECT_COMPILED") != "1", reason="only where the compiled build is tested"
)
def test_the_compiled_build_is_what_runs() -> None:
    assert compiled()
    assert "build/compiled" in Path(jsonservice.__file__).as_posix()
