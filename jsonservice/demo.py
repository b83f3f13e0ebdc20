"""
The built-in demo service that C{twistd -n jsonservice} serves by default.

C{echo(value)} returns C{value}; C{ping()} returns C{"pong"}; any plain JSON
message is answered C{{"message": "Hello from server"}} — so the classic
socket client of the introduction works against it unchanged.
"""

from __future__ import annotations

from typing import Any

from .service import JSONService

__all__ = ["make_demo_service", "service"]


def make_demo_service() -> JSONService:
    """Build a fresh demo service."""
    demo = JSONService()

    @demo.method
    def echo(value: Any) -> Any:
        """Return C{value} unchanged."""
        return value

    @demo.method
    def ping() -> str:
        """Return C{"pong"}."""
        return "pong"

    @demo.message
    def hello(message: Any) -> dict[str, str]:
        """Answer any plain message like the classic example server."""
        return {"message": "Hello from server"}

    return demo


#: The demo service (C{--service jsonservice.demo:service}).
service = make_demo_service()
