"""
The compiled build of the hot path: which modules mypyc compiles
(C{setup.py} reads L{COMPILED_MODULES}) and whether this install runs
them compiled (L{compiled}).  Imports nothing but the standard library.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
from typing import Final

__all__ = ["COMPILED_MODULES", "compiled"]

#: The modules of the hot path that a compiled build compiles with mypyc
#: (the connection core and what it calls per message); the same files
#: are the pure-Python fallback.
COMPILED_MODULES: Final = ("codec", "connection", "framing", "replies", "responders")


def compiled() -> bool:
    """Whether this install runs the connection core compiled (every module of L{COMPILED_MODULES})."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    for name in COMPILED_MODULES:
        spec = importlib.util.find_spec(f"jsonservice.{name}")
        if spec is None or not (spec.origin or "").endswith(suffixes):
            return False
    return True
