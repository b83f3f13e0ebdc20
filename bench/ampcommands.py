"""The AMP commands of the AMP baseline (shared by its server and its client)."""

from __future__ import annotations

from typing import ClassVar

from twisted.protocols import amp


class Echo(amp.Command):
    """Return ``value`` unchanged."""

    arguments = [(b"value", amp.Unicode())]
    response = [(b"value", amp.Unicode())]


class Ping(amp.Command):
    """Return ``"pong"``."""

    arguments: ClassVar[list[tuple[bytes, amp.Argument]]] = []
    response = [(b"value", amp.Unicode())]


class EchoAMP(amp.AMP):
    """Server side: answers :class:`Echo` and :class:`Ping`."""

    @Echo.responder
    def echo(self, value: str) -> dict[str, str]:
        """Echo responder."""
        return {"value": value}

    @Ping.responder
    def ping(self) -> dict[str, str]:
        """Ping responder."""
        return {"value": "pong"}
