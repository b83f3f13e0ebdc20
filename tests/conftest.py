"""
Shared fixtures.

Kept small on purpose, and safe for pytest-twisted: nothing here imports
the reactor at module level (pytest-twisted installs its reactor in
C{pytest_configure}, after conftest modules are imported; DESIGN §8).
"""

from __future__ import annotations

import socket
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def _is_trial_case(item: pytest.Item) -> bool:
    """Whether C{item} is a test of an asynchronous trial C{TestCase}."""
    from twisted.trial.unittest import TestCase

    cls = getattr(item, "cls", None)
    return cls is not None and issubclass(cls, TestCase)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """
    Run asynchronous C{twisted.trial.unittest.TestCase} tests (which spin
    the reactor themselves) before any pytest-twisted test starts it in its
    greenlet: mixed the other way round, the reactor can be left dirty
    (DESIGN §8).  The sort is stable, so the order is otherwise unchanged.
    """
    items.sort(key=lambda item: 0 if _is_trial_case(item) else 1)


@pytest.fixture
def reactor() -> Any:
    """The global reactor, imported lazily (pytest-twisted installed it)."""
    from twisted.internet import reactor as the_reactor

    return the_reactor


def free_port(host: str = "127.0.0.1") -> int:
    """
    A TCP port on C{host} that was free a moment ago (bind to port 0 and
    close).  Racy by nature; good enough for starting a subprocess on it.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@pytest.fixture(name="free_port")
def free_port_fixture() -> Callable[..., int]:
    """L{free_port} as a fixture: C{port = free_port()} or C{free_port("::1")}."""
    return free_port


def ipv6_loopback() -> bool:
    """Whether C{::1} can be bound here (some containers have no IPv6)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture
def ipv6() -> None:
    """Skip the test unless C{::1} can be bound here."""
    if not ipv6_loopback():
        pytest.skip("no IPv6 loopback here")


@pytest.fixture
def service_module(tmp_path: Path) -> Callable[..., Path]:
    """
    Write a C{--service} module into C{tmp_path}:
    C{service_module(source, name="mysvc")} dedents C{source}, writes
    C{tmp_path/mysvc.py} and returns C{tmp_path} (the directory to run
    C{twistd} in, so that C{--service mysvc:attr} imports from the cwd).
    """

    def write(source: str, name: str = "mysvc") -> Path:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        return tmp_path

    return write
