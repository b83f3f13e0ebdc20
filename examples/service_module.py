"""
A service module for the twistd plugin:

    cd examples
    twistd -n --pidfile= jsonservice --service service_module:service --port 8080

C{--service module:attr} imports C{module} from the current directory; the
attribute is a L{JSONService} (as here) or a callable returning one.
"""

from __future__ import annotations

import time
from typing import Any

from jsonservice import JSONService, RPCError

service = JSONService()


@service.method
def add(*numbers: float) -> float:
    """The sum of the numbers: C{add(1, 2, 3)} is C{6}."""
    return sum(numbers)


@service.method("greet")
def greet(name: str, greeting: str = "Hello") -> str:
    """C{greet("Ada")} is C{"Hello, Ada!"}; named params work too."""
    return f"{greeting}, {name}!"


@service.method
def divide(dividend: float, divisor: float) -> float:
    """Division, with an error the caller can read."""
    if divisor == 0:
        raise RPCError(1, "division by zero", {"dividend": dividend})
    return dividend / divisor


@service.method
def server_time() -> float:
    """The server's clock, in seconds since the epoch."""
    return time.time()


@service.message
def on_message(message: Any) -> dict[str, Any]:
    """Plain JSON messages (the classic client) get a greeting back."""
    return {"message": "Hello from service_module", "received": message}
