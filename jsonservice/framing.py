"""
Bytes to lines: the framing of newline-delimited JSON.  Sans-IO.

Nothing here does I/O or imports Twisted.  L{Framer} turns a byte stream
into lines, reports lines over the limit as L{LineTooLong}, and finds an
unterminated complete JSON text left at the end of the stream.
"""

from __future__ import annotations

from typing import Any, Final

from .codec import may_hold_big_int

__all__ = ["Framer", "LineTooLong"]

_CLOSERS: Final = frozenset(b'}]"')


class LineTooLong:
    """
    Framing event: a line exceeded the limit and was (or is being) skipped.

    @ivar limit: the line-length limit in bytes.
    """

    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def __repr__(self) -> str:
        return f"LineTooLong({self.limit})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LineTooLong) and other.limit == self.limit

    def __hash__(self) -> int:
        return hash(self.limit)


class Framer:
    """
    Splits a byte stream into lines.  Sans-IO: feed bytes, get lines.

    Lines come back without their C{\\n}; a trailing C{\\r} is kept (JSON
    treats it as whitespace, and it counts toward the limit) and blank lines
    are passed on (the decoder ignores them), so the common case costs one
    C{split}.  A line longer than C{max_line_length} is reported once as
    L{LineTooLong} in its place and its bytes are dropped up to the next
    newline: the stream goes on.  An unfinished line is kept as a list of
    pieces, so a long line arriving in many chunks costs linear time.

    @ivar max_line_length: the limit, in bytes, not counting the newline.
    @ivar may_hold_big_int: whether the lines the last L{feed} returned may
        hold an integer past 64 bits (pass it to L{loads} as
        C{check_big_int}).
    """

    __slots__ = (
        "_backlog",
        "_discarding",
        "_next_try",
        "_parts",
        "_parts_big",
        "_size",
        "_tail",
        "_tried",
        "max_line_length",
        "may_hold_big_int",
    )

    def __init__(self, max_line_length: int) -> None:
        self.max_line_length = max_line_length
        self._parts: list[bytes] = []
        self._tail = b""  # the last 18 bytes held, for digit runs across reads
        self._size = 0
        self._parts_big = False
        self._discarding = False
        self._tried = 0
        self._next_try = 0
        self._backlog: list[bytes | LineTooLong] = []
        self.may_hold_big_int = False

    @property
    def buffered(self) -> int:
        """Bytes held that are not yet part of a complete line."""
        return self._size

    @property
    def partial(self) -> bytes:
        """The bytes held after the last newline (an unfinished line)."""
        parts = self._parts
        if len(parts) > 1:
            parts[:] = [b"".join(parts)]
        return parts[0] if parts else b""

    def feed(self, data: bytes) -> list[bytes | LineTooLong]:
        """
        Add bytes; return the lines they complete, in order (after any
        lines given back with L{unread}).
        """
        out = self._backlog
        self._backlog = []
        big = bool(out) or may_hold_big_int(data)
        if self._discarding:
            end = data.find(b"\n")
            if end < 0:
                self.may_hold_big_int = big
                return out
            data = data[end + 1 :]
            self._discarding = False
        parts = self._parts
        if parts and not big:
            # A digit run may straddle the boundary, or sit in earlier pieces.
            big = self._parts_big or may_hold_big_int(self._tail + data[:18])
        self.may_hold_big_int = big
        if b"\n" not in data:
            if data:
                parts.append(data)
                self._tail = (self._tail + data)[-18:]
                self._size += len(data)
                self._parts_big = big
                if self._size > self.max_line_length:
                    out.append(LineTooLong(self.max_line_length))
                    self._drop_partial(discard_rest=True)
            return out
        lines: list[Any] = data.split(b"\n")
        if parts:
            parts.append(lines[0])
            lines[0] = b"".join(parts)
        rest = lines.pop()
        self._parts = [rest] if rest else []
        self._tail = rest[-18:]
        self._size = len(rest)
        self._parts_big = big and may_hold_big_int(rest)
        self._tried = self._next_try = 0
        limit = self.max_line_length
        if max(map(len, lines)) > limit:
            lines = [line if len(line) <= limit else LineTooLong(limit) for line in lines]
        if self._size > limit:
            lines.append(LineTooLong(limit))
            self._drop_partial(discard_rest=True)
        if out:
            out.extend(lines)
            return out
        return lines

    def unread(self, lines: list[bytes | LineTooLong]) -> None:
        """
        Give back lines returned by L{feed} but not consumed (the reader
        paused); the next L{feed} returns them first.
        """
        self._backlog[:0] = lines

    def _candidate_shape(self) -> bool:
        """Whether the unfinished line ends like a complete text may."""
        parts = self._parts
        tail = parts[-1].rstrip() if parts else b""
        if not tail and len(parts) > 1:
            tail = self.partial.rstrip()
        return bool(tail) and tail[-1] in _CLOSERS

    def unterminated(self, force: bool = False) -> bytes | None:
        """
        Return the unfinished line if it may be a complete JSON text sent
        without a newline (it ends with C{E{rb}}, C{]} or C{"}), else L{None}.

        To stay linear when a long line arrives in many pieces, a candidate
        is offered again only once it has doubled in length, unless
        C{force} is true; L{retry_pending} says one was held back.
        """
        size = self._size
        if not size or self._discarding:
            return None
        if not force and size < self._next_try:
            return None
        if not self._candidate_shape():
            return None
        self._tried = size
        self._next_try = 2 * size
        return self.partial

    @property
    def retry_pending(self) -> bool:
        """
        Whether L{unterminated} held back a candidate that may be complete;
        call it again with C{force=True} once the peer has gone quiet.
        """
        if self._discarding or not self._tried < self._size < self._next_try:
            return False
        return self._candidate_shape()

    def take_partial(self, discard_rest: bool = False) -> bytes:
        """
        Remove and return the unfinished line (it was handled as a whole
        message).  With C{discard_rest}, also drop what follows up to the
        next newline: the line was found invalid before it ended.
        """
        partial = self.partial
        self._drop_partial(discard_rest)
        return partial

    def _drop_partial(self, discard_rest: bool) -> None:
        self._parts = []
        self._tail = b""
        self._size = 0
        self._parts_big = False
        self._tried = self._next_try = 0
        self._discarding = discard_rest
