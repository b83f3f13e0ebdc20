"""
Chat rooms over JSON-RPC: publish/subscribe with server-to-client
notifications.

A client calls C{subscribe(room, nick)}, C{publish(room, text)},
C{unsubscribe(room)}; every subscriber of the room gets the notification
C{message(room, nick, text)}, which its own client-side service handles.

    python examples/chat.py [ENDPOINT]          # serve (default tcp:8080:interface=127.0.0.1)

and, from Python:

    proto = await jsonservice.connect(reactor, "tcp:127.0.0.1:8080", make_listener(print))
    await proto.call("subscribe", "lobby", "alice")
    await proto.call("publish", "lobby", "hello")
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from jsonservice import CallContext, InvalidParams, JSONProtocol, JSONServerFactory, JSONService

ENDPOINT = "tcp:8080:interface=127.0.0.1"


class Rooms:
    """Who listens to which room: room name -> the subscribed connections."""

    def __init__(self) -> None:
        self.members: dict[str, set[JSONProtocol]] = {}

    def join(self, room: str, proto: JSONProtocol) -> None:
        self.members.setdefault(room, set()).add(proto)

    def leave(self, room: str, proto: JSONProtocol) -> None:
        members = self.members.get(room, set())
        members.discard(proto)
        if not members:
            self.members.pop(room, None)

    def leave_all(self, proto: JSONProtocol) -> None:
        for room in list(self.members):
            self.leave(room, proto)


def make_chat_service(rooms: Rooms) -> JSONService:
    """The server side: C{subscribe}, C{unsubscribe}, C{publish}, C{rooms}."""
    service = JSONService()

    @service.method(context=True)
    def subscribe(ctx: CallContext, room: str, nick: str) -> list[str]:
        """Join C{room} as C{nick}; return the nicks already there."""
        if not isinstance(room, str) or not room:
            raise InvalidParams(data="a room is a non-empty string")
        ctx.state["nick"] = str(nick)
        present = sorted(p.state.get("nick", "?") for p in rooms.members.get(room, ()))
        rooms.join(room, ctx.protocol)
        return present

    @service.method(context=True)
    def unsubscribe(ctx: CallContext, room: str) -> None:
        """Leave C{room}."""
        rooms.leave(room, ctx.protocol)

    @service.method(context=True)
    def publish(ctx: CallContext, room: str, text: str) -> int:
        """Send C{text} to everyone in C{room} (the sender too, if subscribed); return how many."""
        nick = ctx.state.get("nick", "anonymous")
        members = rooms.members.get(room, set())
        for member in members:
            member.notify("message", room, nick, text)
        return len(members)

    @service.method("rooms")
    def list_rooms() -> dict[str, int]:
        """Each room with its number of subscribers."""
        return {room: len(members) for room, members in sorted(rooms.members.items())}

    return service


class ChatServerFactory(JSONServerFactory):
    """A server factory that forgets a connection's subscriptions when it closes."""

    def __init__(self, rooms: Rooms | None = None, **limits: Any) -> None:
        self.rooms = rooms if rooms is not None else Rooms()
        super().__init__(make_chat_service(self.rooms), **limits)

    def connection_lost(self, proto: JSONProtocol) -> None:
        self.rooms.leave_all(proto)
        super().connection_lost(proto)


def make_listener(on_message: Callable[[str, str, str], object]) -> JSONService:
    """
    The client side: a service whose C{message(room, nick, text)}
    notification calls C{on_message}.
    """
    service = JSONService()

    @service.method
    def message(room: str, nick: str, text: str) -> None:
        on_message(room, nick, text)

    return service


def main(reactor: Any, endpoint: str = ENDPOINT) -> Any:
    """Serve chat rooms on C{endpoint} until interrupted."""
    from twisted.internet.defer import Deferred
    from twisted.internet.endpoints import serverFromString

    def serving(port: Any) -> Deferred[None]:
        print(f"chat on {port.getHost()}")
        return Deferred()

    return serverFromString(reactor, endpoint).listen(ChatServerFactory()).addCallback(serving)


if __name__ == "__main__":
    from twisted.internet.task import react

    react(main, sys.argv[1:])
