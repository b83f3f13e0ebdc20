"""
The service the soak run serves: C{twistd -n jsonservice --service soak.service:service}.

C{echo(value)} answers at once; C{slow(value, delay)} answers after
C{delay} seconds (capped at 1); C{fail()} raises an unexpected exception
(answered -32603 with an error id); plain messages get the classic
C{{"message": "Hello from server"}}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from jsonservice import JSONService

__all__ = ["service"]

service = JSONService()


@service.method
def echo(value: Any) -> Any:
    """Return C{value} unchanged."""
    return value


@service.method
def slow(value: Any, delay: float) -> Deferred[Any]:
    """Return C{value} after C{delay} seconds (at most 1)."""
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    return deferLater(reactor, min(max(float(delay), 0.0), 1.0), lambda: value)


@service.method
def fail() -> None:
    """Fail the way a handler bug does."""
    raise RuntimeError("soak: an unexpected handler failure")


@service.message
def hello(message: Any) -> dict[str, str]:
    """Answer any plain message like the classic example server."""
    return {"message": "Hello from server"}
