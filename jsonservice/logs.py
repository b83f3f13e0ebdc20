"""
Structured log output: one JSON object per line, for log shippers::

    twistd --logger jsonservice.logs.json_observer -n jsonservice --port 8080

Each line is a C{twisted.logger} event as JSON (C{eventAsJSON}): the format
string, its fields (C{peer}, C{error_id}, C{requests}, ...), the level, the
namespace and the time, plus C{text}, the formatted message.
"""

from __future__ import annotations

import sys
from typing import IO, Any

from twisted.internet.interfaces import IAddress
from twisted.logger import FileLogObserver, ILogObserver, eventAsJSON, formatEvent

__all__ = ["json_line", "json_observer"]


def _address(value: Any) -> Any:
    """An address as C{host:port} (or its C{str}), other values unchanged."""
    if not IAddress.providedBy(value):
        return value
    host, port = getattr(value, "host", None), getattr(value, "port", None)
    if host is not None and port is not None:
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(value)


def json_line(event: dict[str, Any]) -> str:
    """
    Format one log event as a line of JSON; addresses (C{peer}) become
    C{"host:port"} strings rather than unserializable objects.
    """
    fields = {key: _address(value) for key, value in event.items()}
    fields.setdefault("text", formatEvent(event))
    return eventAsJSON(fields) + "\n"


def json_observer(out: IO[str] | None = None) -> ILogObserver:
    """
    A log observer writing one JSON object per line to C{out} (default:
    stdout) — the factory twistd's C{--logger} option takes.
    """
    return FileLogObserver(out if out is not None else sys.stdout, json_line)
