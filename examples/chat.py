"""
Chat rooms on jsonservice's topics: C{rpc.subscribe} to a room, C{say}
something, and every subscriber of the room gets an C{rpc.event}
notification — on this process, or on any other one sharing a Redis.

The server side is L{make_chat_service}: choose a nick with C{nick(name)},
subscribe to C{"room.NAME"} with the built-in C{rpc.subscribe} (the
authorization hook lets only C{room.*} topics through, and only once a nick
is chosen), and C{say(room, text)}.  Each subscriber receives::

    {"jsonrpc": "2.0", "method": "rpc.event",
     "params": {"topic": "room.lobby", "data": {"room": "lobby", "nick": "alice", "text": "hi"}}}

One process, events in memory::

    python examples/chat.py                              # tcp:8080:interface=127.0.0.1

Several processes and instances, events through Redis (from examples/)::

    twistd -n jsonservice --service chat:make_chat_service --workers 2 \\
        --pubsub redis://127.0.0.1:6379/0

or two instances behind deploy/haproxy.cfg (see deploy/README.md), each
started with C{--listen haproxy:tcp:808N:interface=127.0.0.1} and the same
C{--pubsub}.  From Python, L{make_listener} is the client's side::

    proto = await jsonservice.connect(reactor, "tcp:127.0.0.1:8080", make_listener(print))
    await proto.call("nick", "alice")
    await proto.call("rpc.subscribe", "room.lobby")
    await proto.call("say", "lobby", "hello")
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred

from jsonservice import CallContext, InvalidParams, JSONServerFactory, JSONService, Unauthorized

ENDPOINT = "tcp:8080:interface=127.0.0.1"

#: Rooms are the topics C{room.NAME}.
PREFIX = "room."


def make_chat_service() -> JSONService:
    """The server side: C{nick}, C{say}, and C{rpc.subscribe} to C{room.NAME} topics."""
    service = JSONService("chat")

    @service.method(context=True)
    def nick(ctx: CallContext, name: str) -> str:
        """Choose the nick the others see (needed before joining a room)."""
        if not isinstance(name, str) or not 1 <= len(name) <= 32:
            raise InvalidParams(data="a nick is 1 to 32 characters")
        ctx.state["nick"] = name
        return name

    @service.authorize_subscribe
    def may_join(ctx: CallContext, topic: str) -> bool:
        """Rooms only, and only with a nick."""
        if "nick" not in ctx.state:
            raise Unauthorized(data="choose a nick first: nick(name)")
        return topic.startswith(PREFIX)

    @service.method(context=True)
    def say(ctx: CallContext, room: str, text: str) -> Deferred[None]:
        """
        Send C{text} to everyone in C{room} (the sender too, if subscribed);
        the reply comes once the event is on its way.
        """
        if not isinstance(text, str):
            raise InvalidParams(data="text is a string")
        speaker = ctx.state.get("nick", "anonymous")
        return ctx.publish(PREFIX + room, {"room": room, "nick": speaker, "text": text})

    return service


def make_listener(on_message: Callable[[str, str, str], object]) -> JSONService:
    """
    The client side: a service whose C{rpc.event} handler calls
    C{on_message(room, nick, text)} for each message of the rooms this
    connection subscribed to.
    """
    listener = JSONService()

    @listener.on_event
    def event(topic: str, data: dict[str, Any]) -> None:
        on_message(data["room"], data["nick"], data["text"])

    return listener


def main(reactor: Any, endpoint: str = ENDPOINT, pubsub: str | None = None) -> Any:
    """Serve chat rooms on C{endpoint} until interrupted (events through C{pubsub} if given)."""
    from twisted.internet.endpoints import serverFromString

    factory = JSONServerFactory(make_chat_service(), pubsub=pubsub)

    def serving(port: Any) -> Deferred[None]:
        print(f"chat on {port.getHost()}, events {factory.service.pubsub.backend.description}")
        return Deferred()

    return serverFromString(reactor, endpoint).listen(factory).addCallback(serving)


if __name__ == "__main__":
    from twisted.internet.task import react

    react(main, sys.argv[1:])
