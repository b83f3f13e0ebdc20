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

from typing import TYPE_CHECKING, Any

from .errors import InvalidParams, ServerBusy
from .service import CallContext, JSONService

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall

#: The longest delay C{notify_me} accepts, in seconds.
MAX_DELAY = 60.0
#: Notices of C{notify_me} that may wait at once, per connection.
MAX_WAITING = 16
#: The longest text of a C{notify_me} notice, in characters.
MAX_TEXT = 1000
# Where a connection's waiting notices are kept (its per-connection state).
_WAITING = "jsonservice.demo:notify_me"

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
        Send the caller a "notice" notification carrying the text (at most
        1000 characters).

        It goes after delay seconds (at most 60); the call returns at once.
        At most 16 notices wait at once per connection (then: server busy),
        and they are dropped when the connection closes.  Over HTTP there
        is no way back to the caller: it is dropped.
        """
        if isinstance(delay, bool) or not isinstance(delay, (int, float)):
            raise InvalidParams(data="notify_me: delay is a number of seconds")
        if not isinstance(text, str) or len(text) > MAX_TEXT:
            raise InvalidParams(data=f"notify_me: text is a string of at most {MAX_TEXT} characters")
        seconds = min(max(float(delay), 0.0), MAX_DELAY)
        waiting: set[IDelayedCall] | None = ctx.state.get(_WAITING)
        if waiting is None:
            waiting = ctx.state[_WAITING] = set()
            ctx.protocol.when_closed().addCallback(_cancel_all, waiting)
        if len(waiting) >= MAX_WAITING:
            raise ServerBusy(data=f"notify_me: {MAX_WAITING} notices are already waiting on this connection")

        def send() -> None:
            waiting.discard(timer)
            ctx.notify("notice", text)

        timer = ctx.protocol.clock.callLater(seconds, send)
        waiting.add(timer)
        return True

    @demo.message
    def hello(message: Any) -> dict[str, str]:
        """Answer any plain message like the classic example server."""
        return {"message": "Hello from server"}

    return demo


def _cancel_all(_: None, waiting: set[IDelayedCall]) -> None:
    """The connection closed: its waiting notices will not be sent."""
    for timer in waiting:
        if timer.active():
            timer.cancel()
    waiting.clear()


#: The demo service (C{--service jsonservice.demo:service}).
service = make_demo_service()
