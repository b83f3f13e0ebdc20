"""
Every limit and default of jsonservice, in one place.

L{Limits} is what L{JSONServerFactory<jsonservice.server.JSONServerFactory>},
L{JSONClientFactory<jsonservice.client.JSONClientFactory>} and the twistd
plugin accept as keyword arguments / options.  No Twisted import here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = [
    "LIMIT_HELP",
    "MAX_EVENT_BYTES",
    "MAX_TOPICS",
    "MAX_TOPIC_LENGTH",
    "ORJSON_MAX_DEPTH",
    "REDIS_PUBLISH_BACKLOG",
    "REDIS_TIMEOUT",
    "TOPIC_CHARACTERS",
    "Limits",
]

#: orjson refuses documents nested deeper than this; the fallback decoder
#: enforces the same bound, so it is also the highest C{max_depth} allowed.
ORJSON_MAX_DEPTH = 1024

MiB = 1024 * 1024

# -- topics (rpc.subscribe, service.publish) ---------------------------------
# Not per factory: every process and instance sharing a Redis must agree on them.

#: The longest topic name, in characters.
MAX_TOPIC_LENGTH = 200
#: The characters a topic name is made of (besides ASCII letters and digits):
#: enough for C{room.lobby}, C{user:42/inbox}, C{orders-eu_west}; no spaces,
#: no control characters, nothing a log line or a Redis channel must escape.
TOPIC_CHARACTERS = "._:/-"
#: The longest event line (C{rpc.event} notification, encoded) C{publish}
#: accepts: what a jsonservice client with default limits reads.
MAX_EVENT_BYTES = 1 * MiB
#: Distinct topics with subscribers in one process (and Redis channels it holds).
MAX_TOPICS = 100_000
#: Redis: bytes of C{PUBLISH} commands awaiting Redis's reply; past it
#: C{publish} fails at once (-32001) instead of queueing without bound.
REDIS_PUBLISH_BACKLOG = 16 * MiB
#: Redis: seconds to connect, to get a reply, or to get the answer to a
#: keep-alive; past it the connection is dropped and made again.
REDIS_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Limits:
    """
    The limits of one factory (and of every connection it builds).

    Sizes are in bytes, times in seconds; a time of C{0} means "no limit".
    """

    #: Longest line accepted; longer ones get -32002 and are skipped.
    max_line_length: int = 1 * MiB
    #: Deepest nesting accepted; deeper input is a parse error (-32700).
    max_depth: int = ORJSON_MAX_DEPTH
    #: Most items in one batch; larger batches get -32003.
    max_batch: int = 1000
    #: Requests a connection may have running before it stops being read.
    max_in_flight: int = 1000
    #: Unsent output a connection may queue before it stops being read.
    max_unsent: int = 4 * MiB
    #: A connection whose output stays stalled this long is aborted.
    write_stall_timeout: float = 60.0
    #: A request running longer is cancelled and answered -32000.
    request_timeout: float = 30.0
    #: A connection quiet this long is closed (servers only).
    idle_timeout: float = 600.0
    #: Connections a server accepts at once; more get -32001 and are closed.
    max_connections: int = 10_000
    #: On shutdown, how long in-flight requests get to finish.
    shutdown_grace: float = 10.0
    #: Default time this side waits for the reply to its own call (0 = forever).
    call_timeout: float = 0.0
    #: With a token required, how long a new connection has to authenticate.
    auth_timeout: float = 10.0
    #: Server-wide: input buffered and output queued over all connections of
    #: a factory; past it the heaviest readers are paused until below 80 %.
    max_buffered: int = 256 * MiB
    #: Topics one connection may subscribe to; more get -32001.
    max_subscriptions: int = 128
    #: Unsent output (bytes) past which events for a connection are dropped
    #: and counted instead of queued (never more than C{max_unsent}).
    max_event_backlog: int = 1 * MiB

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"limit {field.name} must be a number, not {value!r}")
            if value < 0:
                raise ValueError(f"limit {field.name} must not be negative, got {value!r}")
        if not 1 <= self.max_depth <= ORJSON_MAX_DEPTH:
            raise ValueError(f"max_depth must be between 1 and {ORJSON_MAX_DEPTH}, got {self.max_depth}")
        for name in (
            "max_line_length",
            "max_batch",
            "max_in_flight",
            "max_unsent",
            "max_connections",
            "max_buffered",
            "max_subscriptions",
            "max_event_backlog",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"limit {name} must be at least 1")

    @classmethod
    def from_kwargs(cls, limits: Limits | None = None, **kwargs: Any) -> Limits:
        """
        Build limits from keyword arguments, refusing unknown names.

        @param limits: a starting point (default: the defaults).
        """
        base = limits if limits is not None else cls()
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise TypeError(f"unknown limit(s): {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        return dataclasses.replace(base, **kwargs) if kwargs else base


#: One line of help per limit, used by the twistd options and the README.
LIMIT_HELP: dict[str, str] = {
    "max_line_length": "longest line in bytes; longer lines get -32002 and are skipped",
    "max_depth": "deepest JSON nesting accepted (at most 1024); deeper is -32700",
    "max_batch": "most items in one batch; more get -32003",
    "max_in_flight": "requests running per connection before it stops being read",
    "max_unsent": "unsent output bytes per connection before it stops being read",
    "write_stall_timeout": "seconds output may stay stalled before the connection is aborted (0 = never)",
    "request_timeout": "seconds a request may run before -32000 (0 = no limit)",
    "idle_timeout": "seconds a quiet connection is kept open (0 = forever)",
    "max_connections": "connections accepted at once; more get -32001 and are closed",
    "shutdown_grace": "seconds in-flight requests get to finish on shutdown",
    "call_timeout": "seconds this side waits for the reply to its own calls (0 = forever)",
    "auth_timeout": "seconds a connection has to authenticate when a token is required",
    "max_buffered": (
        "bytes buffered, queued and running (2 KiB a request) over all connections;"
        " past it the heaviest readers pause"
    ),
    "max_subscriptions": "topics one connection may subscribe to (rpc.subscribe); more get -32001",
    "max_event_backlog": "unsent output bytes past which a connection's events are dropped and counted",
}
