"""
The build backend: setuptools, with the hot path compiled by mypyc.

A wheel (C{pip install .}, C{pip wheel .}) compiles the modules listed in
C{jsonservice/_mypyc.py}, C{COMPILED_MODULES}, unless
C{JSONSERVICE_COMPILE=0}; C{setup.py} falls back to the pure-Python
modules, with a warning, when they do not compile (no C compiler), or
fails the build if C{JSONSERVICE_COMPILE=1} asked for them.  An
editable install (C{pip install -e .}, what the Makefile uses for
development) never compiles: the sources stay the code that runs.

This wraps C{setuptools.build_meta} only to ask for mypyc, and what it
type-checks against, when compiling (see setuptools' documentation on
in-tree backends).
"""

from __future__ import annotations

import os
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403 - every hook setuptools defines

#: What compiling needs besides setuptools: mypyc (in mypy), and what the
#: compiled modules are type-checked against.
COMPILE_REQUIRES = ["mypy>=1.10", "mypy-zope>=1.0", "twisted>=23.8", "orjson>=3.9", "msgspec>=0.18"]


def _compiling() -> bool:
    return os.environ.get("JSONSERVICE_COMPILE", "1") != "0"


def get_requires_for_build_wheel(config_settings: Any = None) -> list[str]:
    """setuptools' requirements, and mypyc's when compiling."""
    extra = COMPILE_REQUIRES if _compiling() else []
    return [*_setuptools.get_requires_for_build_wheel(config_settings), *extra]


def build_editable(wheel_directory: str, config_settings: Any = None, metadata_directory: Any = None) -> str:
    """An editable install: never compiled (no stale extension modules next to the sources)."""
    os.environ["JSONSERVICE_COMPILE"] = "0"
    return str(_setuptools.build_editable(wheel_directory, config_settings, metadata_directory))
