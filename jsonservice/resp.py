"""
Sans-IO RESP2, the Redis protocol: commands out (L{encode_command}),
replies in (L{RespParser}).  No Twisted import.
"""

from __future__ import annotations

from typing import Any, Final

from .limits import MAX_EVENT_BYTES

__all__ = ["MESSAGE_HEAD", "RedisError", "RespParser", "encode_command"]


class RedisError(Exception):
    """An error reply from Redis (C{-ERR ...}), or a reply that breaks RESP."""


class _Incomplete(Exception):
    def __init__(self, need: int) -> None:
        self.need = need


#: How a pub/sub message push starts: C{["message", channel, payload]}.
MESSAGE_HEAD: Final = b"*3\r\n$7\r\nmessage\r\n"


def encode_command(*args: bytes) -> bytes:
    """A command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts += (b"$%d\r\n" % len(arg), arg, b"\r\n")
    return b"".join(parts)


class RespParser:
    """
    Sans-IO RESP2 reader: bytes in, replies out (L{bytes} for simple and
    bulk strings, L{int}, L{None}, lists, and L{RedisError} values for error
    replies).  Linear however the bytes are split: a reply is only parsed
    again once at least the bytes it was missing have arrived.
    """

    #: Longest simple line (type byte to CRLF): status, error, length headers.
    MAX_LINE: Final = 64 * 1024
    #: Deepest nesting of arrays accepted (pub/sub replies are one level).
    MAX_DEPTH: Final = 8

    def __init__(self, max_bulk: int = MAX_EVENT_BYTES + 64 * 1024) -> None:
        self.max_bulk = max_bulk
        self._buffer = bytearray()
        self._need = 0

    def feed(self, data: bytes) -> list[Any]:
        """
        The replies complete once C{data} is added.

        @raise RedisError: the bytes are not RESP, or a bulk is over
            C{max_bulk} (the connection must be dropped).
        """
        buffer = self._buffer
        buffer += data
        if len(buffer) < self._need:
            return []
        replies: list[Any] = []
        pos = 0
        while pos < len(buffer):
            try:
                if buffer.startswith(MESSAGE_HEAD, pos):
                    # The common reply of a subscriber: two bulks, no recursion.
                    channel, pos_after = self._parse(buffer, pos + len(MESSAGE_HEAD), 1)
                    payload, pos_after = self._parse(buffer, pos_after, 1)
                    replies.append([b"message", channel, payload])
                    pos = pos_after
                    continue
                value, pos_after = self._parse(buffer, pos, 0)
            except _Incomplete as incomplete:
                self._need = incomplete.need - pos
                break
            replies.append(value)
            pos = pos_after
        else:
            self._need = 0
        del buffer[:pos]
        return replies

    def _parse(self, buffer: bytearray, pos: int, depth: int) -> tuple[Any, int]:
        end = buffer.find(b"\r\n", pos)
        if end < 0:
            if len(buffer) - pos > self.MAX_LINE:
                raise RedisError("a RESP line over 64 KiB")
            raise _Incomplete(len(buffer) + 1)
        kind = buffer[pos]
        line = bytes(buffer[pos + 1 : end])
        after = end + 2
        if kind == 0x24:  # $ bulk string
            size = _int(line)
            if size < 0:
                return None, after
            if size > self.max_bulk:
                raise RedisError(f"a bulk string of {size} bytes, over {self.max_bulk}")
            if len(buffer) < after + size + 2:
                raise _Incomplete(after + size + 2)
            if buffer[after + size : after + size + 2] != b"\r\n":
                raise RedisError("a bulk string not ended by CRLF")
            return bytes(buffer[after : after + size]), after + size + 2
        if kind == 0x2A:  # * array
            count = _int(line)
            if count < 0:
                return None, after
            if depth >= self.MAX_DEPTH or count > 1 << 20:
                raise RedisError("a RESP array too deep or too long")
            items = []
            for _ in range(count):
                item, after = self._parse(buffer, after, depth + 1)
                items.append(item)
            return items, after
        if kind == 0x2B:  # + simple string
            return line, after
        if kind == 0x2D:  # - error
            return RedisError(line.decode("utf-8", "replace")), after
        if kind == 0x3A:  # : integer
            return _int(line), after
        raise RedisError(f"not RESP: type byte {bytes([kind])!r}")


def _int(line: bytes) -> int:
    try:
        return int(line)
    except ValueError:
        raise RedisError(f"not a RESP integer: {line[:40]!r}") from None
