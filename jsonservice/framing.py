"""
Bytes to lines: the framing of newline-delimited JSON.  Sans-IO.

Nothing here does I/O or imports Twisted.  L{Framer} turns a byte stream
into lines, reports lines over the limit as L{LineTooLong}, and tells when
the unfinished line at the end of the stream already holds one complete
JSON text (a peer that sends a value without a newline and waits).

Every byte is looked at a bounded number of times over its life: lines are
cut with one C{split} per read, and the unfinished line is examined by an
incremental structural scanner that remembers where it stopped (as h11's
receive buffer remembers where its last search stopped).
"""

from __future__ import annotations

from typing import Any, Final

from .codec import may_need_exact

__all__ = ["Framer", "LineTooLong"]

# JSON whitespace.  CR and LF end lines, so inside a line only space and tab
# occur; all four are listed so the scanner's notion matches RFC 8259's.
_WHITESPACE: Final = b" \t\r\n"
_CLOSERS: Final = frozenset(b'}]"')

# The scanner's states for the unfinished line.
_START: Final = 0  # only whitespace so far
_STRING: Final = 1  # inside a string (top level if depth is 0)
_VALUE: Final = 2  # inside an array or object, outside any string
_DONE: Final = 3  # the top-level value has closed; whitespace since
_DEAD: Final = 4  # cannot become one complete text: wait for the line end

# translate() arguments that keep only quotes and brackets, braces turned
# into square brackets (the scanner does not tell them apart).
_SQUARE: Final = bytes.maketrans(b"{}", b"[]")
_NOT_STRUCTURAL: Final = bytes(sorted(set(range(256)) - set(b'"[]{}')))

# Reads that small are appended to the last piece of the unfinished line when
# that piece is small too, so a peer trickling a line byte by byte costs a
# bounded number of pieces (memory, and Python steps for the scanner).
_SMALL: Final = 512


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

    A line ends with C{\\n}, C{\\r\\n} or a bare C{\\r} (a raw CR can only be
    whitespace between tokens in JSON, so ending lines on it changes nothing
    for valid input and serves CR-only peers).  Lines come back without
    their terminator, and the terminator does not count toward the limit.
    Blank lines are passed on (the decoder ignores them), except that the
    C{\\n} of a C{\\r\\n} split across two reads is dropped: however the
    stream is cut into reads, the same lines come out.  The common case
    costs one C{split}.

    A line longer than C{max_line_length} is reported once as
    L{LineTooLong} in its place and its bytes are dropped up to the next
    line end: the stream goes on.  An unfinished line is kept as a list of
    pieces, so a long line arriving in many reads costs linear time.

    L{unterminated} says whether the unfinished line already holds one
    complete JSON text.  It scans incrementally and only when asked: each
    byte of the line is examined in one call only over the life of the
    line (by a few C-speed passes), never re-joined and scanned again.

    @ivar buffered: bytes held that are not yet part of a complete line.
    @ivar max_line_length: the limit, in bytes, not counting the line end.
    @ivar may_need_exact: whether the lines the last L{feed} returned may
        hold a number only the exact path decodes unchanged, an underflow
        or (with C{big_ints}) an integer past 64 bits (pass it to L{loads
        <jsonservice.codec.loads>} as C{check_exact}).
    @ivar big_ints: set by the owner: whether the reads to come are looked
        at for integers past 64 bits too (their lines go to orjson); not
        needed for lines that msgspec decodes (see L{may_need_exact
        <jsonservice.codec.may_need_exact>}).  Default: yes.
    @ivar covers_big_ints: whether L{may_need_exact} of the last L{feed}
        covers such integers (every read holding a piece of its lines was
        looked at with C{big_ints}; pass it to L{loads} as
        C{big_ints_checked}).
    @ivar scanned: bytes the structural scanner of L{unterminated} has
        examined since construction, counting every pass it makes over a
        byte (a handful at most): a deterministic measure of its work.
    """

    __slots__ = (
        "_after_cr",
        "_depth",
        "_discarding",
        "_escape",
        "_last",
        "_parts",
        "_parts_big",
        "_parts_exact",
        "_scan_index",
        "_scan_pos",
        "_scanning",
        "_state",
        "_tail",
        "big_ints",
        "buffered",
        "covers_big_ints",
        "max_line_length",
        "may_need_exact",
        "scanned",
    )

    def __init__(self, max_line_length: int) -> None:
        self.max_line_length = max_line_length
        self._parts: list[bytes] = []
        self._tail = b""  # the last 18 bytes held, for digit runs and "e-" across reads
        self.buffered = 0
        self._parts_exact = False
        self._parts_big = True  # every piece held was looked at with big_ints
        self._discarding = False
        self._after_cr = False  # the last byte fed was a CR ending a line
        self.may_need_exact = False
        self.big_ints = True
        self.covers_big_ints = True
        self.scanned = 0
        # The last non-whitespace byte of the unfinished line, or -1.
        self._last = -1
        # Scanner state; _scanning says it has moved since the last reset.
        self._scanning = False
        self._state = _START
        self._depth = 0
        self._escape = False  # a backslash ended the bytes scanned so far
        self._scan_index = 0  # where the scan stopped: piece index ...
        self._scan_pos = 0  # ... and offset in that piece

    @property
    def partial(self) -> bytes:
        """The bytes held after the last line end (an unfinished line)."""
        parts = self._parts
        if len(parts) > 1:
            # Join once and keep the result; the scan position moves with it.
            index = self._scan_index
            self._scan_pos += sum(map(len, parts[:index]))
            self._scan_index = 0
            parts[:] = [b"".join(parts)]
        return parts[0] if parts else b""

    def feed(self, data: bytes) -> list[bytes | LineTooLong]:
        """
        Add bytes; return the lines they complete, in order, each without
        its line end, or a L{LineTooLong} in the place of a line over the
        limit.
        """
        if self._after_cr and data:
            self._after_cr = False
            if data[0] == 10:  # the LF of a CRLF cut between two reads
                data = data[1:]
        if 13 in data:  # a CR is rare; an int test is one memchr
            self._after_cr = data[-1] == 13
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        big_ints = self.big_ints
        big = may_need_exact(data, big_ints)
        covers = big_ints
        if self._discarding:
            end = data.find(b"\n")
            if end < 0:
                self.may_need_exact = big
                self.covers_big_ints = covers
                return []
            data = data[end + 1 :]
            self._discarding = False
        parts = self._parts
        if parts:
            covers = covers and self._parts_big
            if not big:
                # A digit run or an "e-" may straddle the boundary, or sit in earlier pieces.
                big = self._parts_exact or may_need_exact(self._tail + data[:18], big_ints)
        self.may_need_exact = big
        self.covers_big_ints = covers
        if 10 not in data:  # no line ends here
            out: list[bytes | LineTooLong] = []
            if data:
                self._append(data)
                self._parts_exact = big
                self._parts_big = covers
                if self.buffered > self.max_line_length:
                    out.append(LineTooLong(self.max_line_length))
                    self._drop_partial(discard_rest=True)
            return out
        lines: list[Any] = data.split(b"\n")
        rest = lines.pop()
        if parts:
            # The unfinished line ends in this read: forget its state.
            parts.append(lines[0])
            lines[0] = b"".join(parts)
            self._parts = []
            self._tail = b""
            self._parts_exact = False
            self._parts_big = True
            self._last = -1
            self.buffered = 0
            if self._scanning:
                self._reset_scan()
        limit = self.max_line_length
        if len(data) + len(lines[0]) > limit and max(map(len, lines)) > limit:
            lines = [line if len(line) <= limit else LineTooLong(limit) for line in lines]
        if rest:
            self._parts = [rest]
            self._tail = rest[-18:]
            self._parts_exact = big and may_need_exact(rest, big_ints)
            self._parts_big = big_ints
            self.buffered = size = len(rest)
            stripped = rest.rstrip(_WHITESPACE)
            self._last = stripped[-1] if stripped else -1
            if size > limit:
                lines.append(LineTooLong(limit))
                self._drop_partial(discard_rest=True)
        return lines

    def _append(self, data: bytes) -> None:
        """Add a read that ends no line to the unfinished line."""
        parts = self._parts
        if len(data) < _SMALL and parts and len(parts[-1]) < _SMALL:
            if self._scan_index == len(parts):  # the scan stopped at its end
                self._scan_index -= 1
                self._scan_pos = len(parts[-1])
            parts[-1] += data
        else:
            parts.append(data)
        self._tail = (self._tail + data)[-18:]
        self.buffered += len(data)
        # Only the newest bytes can change the last non-whitespace byte, and
        # each read is stripped once: linear however the line trickles in.
        stripped = data.rstrip(_WHITESPACE)
        if stripped:
            self._last = stripped[-1]

    def unterminated(self) -> bytes | None:
        """
        Return the unfinished line if it holds exactly one complete JSON
        text whose top level is an object, an array or a string, followed
        only by whitespace (a peer sent a value without a newline and is
        waiting for the reply); else L{None}.

        A bare number or literal is never returned: more digits may follow.
        The test is structural (strings, escapes, bracket depth), not a
        parse: decode what this returns with the strict decoder, which
        rejects a balanced but invalid text such as C{[1,,2]} (no more bytes
        could make it valid).  Handle the line, then L{take_partial} it.

        Work is incremental: only bytes no earlier call examined are
        scanned, and none while the line's last non-whitespace byte cannot
        end a text (it is not C{E{rb}}, C{]} or C{"}); the bytes skipped are
        scanned, once, by the first call that needs them.  The state is
        forgotten when the line is completed by a line end or taken.
        """
        if not self.buffered or self._discarding:
            return None
        state = self._state
        if state == _DEAD or self._last not in _CLOSERS:
            return None
        parts = self._parts
        index = self._scan_index
        if index < len(parts):
            self._scanning = True
            pos = self._scan_pos
            while index < len(parts) and self._state != _DEAD:
                self._scan(parts[index][pos:] if pos else parts[index])
                index += 1
                pos = 0
            self._scan_index = len(parts)
            self._scan_pos = 0
            state = self._state
        return self.partial if state == _DONE else None

    def _scan(self, data: bytes) -> None:
        """
        Advance the scanner over C{data}, the next bytes of the line.  The
        Python steps are per call and per state change, not per byte:
        C{replace}, C{translate}, C{split} and C{find} do the rest.
        """
        self.scanned += len(data)
        if self._escape:
            # The bytes before ended with a backslash that escapes this byte.
            self._escape = False
            if data[:1] == b'"' or data[:1] == b"\\":
                data = data[1:]
        if 92 in data:  # a backslash
            # Take escapes out of the way, so that every quote left is a
            # string delimiter.  A run of backslashes starts at an escape
            # (the byte before it is not a backslash), so pairing them from
            # the left is right; an odd one out escapes the byte after it,
            # which only matters if that is a quote.  (Outside strings a
            # backslash is not JSON; it is treated alike, so the scan does
            # not depend on where reads are cut.)
            self.scanned += len(data)
            data = data.replace(b"\\\\", b"__").replace(b'\\"', b"__")
            self._escape = data.endswith(b"\\")
        state = self._state
        if state == _START:
            data = data.lstrip(_WHITESPACE)
            if not data:
                return
            first = data[0]
            if first == 34:  # '"'
                state = _STRING
            elif first == 91 or first == 123:  # '[', '{'
                self._depth = 1
                state = _VALUE
            else:  # a number, a literal, or not JSON at all
                self._state = _DEAD
                return
            data = data[1:]
        if state == _STRING:
            end = data.find(b'"')
            if end < 0:
                self._state = state
                return
            data = data[end + 1 :]
            state = _VALUE if self._depth else _DONE
        if state == _VALUE:
            state = self._container(data)
        elif state == _DONE and data.strip(_WHITESPACE):
            state = _DEAD  # a second value, or garbage, after the first
        self._state = state

    def _container(self, data: bytes) -> int:
        """
        Account for C{data}, bytes inside an array or object that start
        outside any string and have their escapes taken out; return the new
        state.
        """
        brackets = data.translate(_SQUARE, _NOT_STRUCTURAL)
        in_string = False
        if 34 in brackets:  # a quote
            self.scanned += len(brackets)
            quotes = brackets.count(b'"')
            if quotes == len(brackets):  # strings, and no bracket at all
                in_string = quotes % 2 == 1
                brackets = b""
            else:
                # Drop strings, keeping the brackets outside them.  Removing
                # two adjacent quotes removes a string or a gap between
                # strings with no bracket in it, and keeps the parity of the
                # quotes before every bracket: for usual JSON, no quote is
                # left.
                brackets = brackets.replace(b'""', b"")
                if 34 in brackets:  # a quote
                    pieces = brackets.split(b'"')
                    in_string = not len(pieces) % 2  # an odd number of quotes
                    brackets = b"".join(pieces[0::2])
        depth = self._depth
        closes = brackets.count(b"]")
        if closes < depth:
            # The depth cannot reach zero here: counting is enough.
            self._depth = depth + len(brackets) - 2 * closes
            return _STRING if in_string else _VALUE
        # The top level may close here: find where.  Adjacent pairs "[]"
        # cannot hold the first return to depth zero (the depth before one
        # is at least 1), so removing them first keeps the answer; a pass
        # that removes a pair at the very end shows bytes after the close.
        # Passes stop once they shrink little, so they cost linear time, and
        # what is left takes a Python step per bracket.
        after_close = False
        while True:
            self.scanned += len(brackets)
            shorter = brackets.replace(b"[]", b"")
            after_close = after_close or brackets.endswith(b"[]")
            done = len(shorter) * 4 > len(brackets) * 3
            brackets = shorter
            if done or not brackets:
                break
        self.scanned += len(brackets)
        left = len(brackets)
        for byte in brackets:
            left -= 1
            depth += 1 if byte == 91 else -1
            if not depth:
                break
        else:
            self._depth = depth
            return _STRING if in_string else _VALUE
        self._depth = 0
        if left or after_close or in_string:
            return _DEAD  # more after the top level closed
        # Whatever follows the closing bracket must be whitespace: then it is
        # the last byte that is not (a string or a number after it would be).
        data = data.rstrip(_WHITESPACE)
        return _DONE if data[-1] == 93 or data[-1] == 125 else _DEAD

    def take_partial(self, discard_rest: bool = False) -> bytes:
        """
        Remove and return the unfinished line (it was handled as a whole
        message).  With C{discard_rest}, also drop what follows up to the
        next line end: the line was found invalid before it ended.
        """
        partial = self.partial
        self._drop_partial(discard_rest)
        return partial

    def _drop_partial(self, discard_rest: bool) -> None:
        self._parts = []
        self._tail = b""
        self.buffered = 0
        self._parts_exact = False
        self._parts_big = True
        self._last = -1
        self._discarding = discard_rest
        if self._scanning:
            self._reset_scan()

    def _reset_scan(self) -> None:
        """Forget the scan: the unfinished line was completed or taken."""
        self._scanning = False
        self._state = _START
        self._depth = 0
        self._escape = False
        self._scan_index = 0
        self._scan_pos = 0
