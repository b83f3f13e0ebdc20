"""
The built-in demo service that C{twistd -n jsonservice} serves by default.
(Its handlers' docstrings are plain text: C{rpc.discover} and the explorer
show them to the service's users.)

C{echo(value)} returns C{value}; C{ping()} returns C{"pong"};
C{notify_me(text, delay)} sends the caller a C{notice} notification; any
plain JSON message is answered C{{"message": "Hello from server"}} — so the
classic socket client of the introduction works against it unchanged.
"""

from __future__ import annotations

from typing import Any

from .errors import InvalidParams
from .service import CallContext, JSONService

#: The longest delay C{notify_me} accepts, in seconds.
MAX_DELAY = 60.0

__all__ = ["make_demo_service", "service"]


def make_demo_service() -> JSONService:
    """Build a fresh demo service."""
    demo = JSONService()

    @demo.method
    def echo(value: Any) -> Any:
        """Return the value unchanged."""
        return value

    @demo.method
    def ping() -> str:
        """Return "pong"."""
        return "pong"

    @demo.method(context=True)
    def notify_me(ctx: CallContext, text: str = "hello", delay: float = 0.0) -> bool:
        """
        Send the caller a "notice" notification carrying the text.

        It goes after delay seconds (at most 60); the call returns at once.
        Over HTTP there is no way back to the caller: it is dropped.
        """
        if isinstance(delay, bool) or not isinstance(delay, (int, float)):
            raise InvalidParams(data="notify_me: delay is a number of seconds")
        seconds = min(max(float(delay), 0.0), MAX_DELAY)
        ctx.protocol.clock.callLater(seconds, ctx.notify, "notice", text)
        return True

    @demo.message
    def hello(message: Any) -> dict[str, str]:
        """Answer any plain message like the classic example server."""
        return {"message": "Hello from server"}

    return demo


#: The demo service (C{--service jsonservice.demo:service}).
service = make_demo_service()
