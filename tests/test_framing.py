"""
Tests for L{jsonservice.framing}: lines, line ends, limits, and the
incremental scanner behind L{Framer.unterminated}.

Pure: no Twisted, no I/O.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jsonservice.codec import dumps, dumps_line, loads
from jsonservice.errors import ParseError
from jsonservice.framing import Framer, LineTooLong

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Event = bytes | LineTooLong


def feed_all(framer: Framer, chunks: list[bytes]) -> list[Event]:
    out: list[Event] = []
    for chunk in chunks:
        out.extend(framer.feed(chunk))
    return out


def split_at(stream: bytes, cuts: list[int]) -> list[bytes]:
    cuts = sorted(cuts)
    return [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]


# --- splitting and line ends ---------------------------------------------------------

STREAM = b'{"a":1}\n[2]\r\n\n"three"\n\r\n4\n{"b":2}\r{"c":3}\r\r[5]\r\r\n'
STREAM_LINES = [b'{"a":1}', b"[2]", b"", b'"three"', b"", b"4", b'{"b":2}', b'{"c":3}', b"", b"[5]", b""]


def test_framer_whole_stream() -> None:
    framer = Framer(100)
    assert framer.feed(STREAM) == STREAM_LINES
    assert framer.buffered == 0
    assert framer.partial == b""


def test_framer_every_two_way_split() -> None:
    for cut in range(len(STREAM) + 1):
        framer = Framer(100)
        assert feed_all(framer, [STREAM[:cut], STREAM[cut:]]) == STREAM_LINES, cut


def test_framer_every_three_way_split() -> None:
    for first in range(len(STREAM) + 1):
        for second in range(first, len(STREAM) + 1):
            framer = Framer(100)
            chunks = [STREAM[:first], STREAM[first:second], STREAM[second:]]
            assert feed_all(framer, chunks) == STREAM_LINES, chunks


def test_framer_byte_by_byte() -> None:
    framer = Framer(100)
    assert feed_all(framer, [STREAM[i : i + 1] for i in range(len(STREAM))]) == STREAM_LINES


def test_framer_partial_is_kept_until_newline() -> None:
    framer = Framer(100)
    assert framer.feed(b'{"a"') == []
    assert framer.partial == b'{"a"'
    assert framer.buffered == 4
    assert framer.feed(b":1}") == []
    assert framer.buffered == 7
    assert framer.feed(b"\n[") == [b'{"a":1}']
    assert framer.partial == b"["
    assert framer.buffered == 1


def test_cr_only_peer_pipelined_in_one_read() -> None:
    """The request after the first CR is not lost."""
    framer = Framer(100)
    assert framer.feed(b'{"a":1}\r{"b":2}\r') == [b'{"a":1}', b'{"b":2}']
    assert framer.buffered == 0
    assert framer.feed(b'{"c":3}\r') == [b'{"c":3}']


def test_cr_ends_a_line_at_once() -> None:
    """A CR-only peer waiting for its reply gets it: no need for a LF."""
    framer = Framer(100)
    assert framer.feed(b"[1]\r") == [b"[1]"]
    assert framer.buffered == 0
    assert framer.unterminated() is None


def test_crlf_split_between_chunks_yields_no_extra_line() -> None:
    framer = Framer(100)
    assert framer.feed(b"[1]\r") == [b"[1]"]
    assert framer.feed(b"\n") == []
    assert framer.feed(b"\n") == [b""]  # a real blank line is passed on
    assert framer.feed(b"[2]\r") == [b"[2]"]
    assert framer.feed(b"\n[3]\n") == [b"[3]"]


def test_cr_then_empty_read_then_lf() -> None:
    framer = Framer(100)
    assert framer.feed(b"[1]\r") == [b"[1]"]
    assert framer.feed(b"") == []
    assert framer.feed(b"\n[2]") == []
    assert framer.partial == b"[2]"


def test_cr_split_only_drops_a_lf_right_after_it() -> None:
    framer = Framer(100)
    assert framer.feed(b"[1]\r") == [b"[1]"]
    assert framer.feed(b"[2]\n") == [b"[2]"]
    assert framer.feed(b"\n") == [b""]


def test_mixed_line_ends() -> None:
    framer = Framer(100)
    assert framer.feed(b"a\nb\r\nc\rd\n\re\r\r\nf") == [b"a", b"b", b"c", b"d", b"", b"e", b""]
    assert framer.partial == b"f"


def test_no_line_keeps_a_trailing_cr() -> None:
    framer = Framer(100)
    lines = feed_all(framer, [b'{"a":', b"1}\r", b"\n", b"[2]\r\n"])
    assert lines == [b'{"a":1}', b"[2]"]
    assert all(not line.endswith(b"\r") for line in lines if isinstance(line, bytes))


def test_framer_blank_lines_passed_through() -> None:
    framer = Framer(100)
    assert framer.feed(b"\n\n\r\n\r") == [b"", b"", b"", b""]


def test_framer_empty_feed() -> None:
    framer = Framer(100)
    assert framer.feed(b"") == []
    framer.feed(b"ab")
    assert framer.feed(b"") == []
    assert framer.partial == b"ab"


def test_many_small_reads_are_kept_in_few_pieces() -> None:
    """A line trickled a byte at a time is not kept as a piece per byte."""
    framer = Framer(10**6)
    data = b'["' + b"x" * 5000
    for i in range(len(data)):
        framer.feed(data[i : i + 1])
    assert len(framer._parts) < 20
    assert framer.partial == data
    assert framer.feed(b'"]\n') == [data + b'"]']


# --- may_need_exact: big integers and underflows -------------------------------------

HUGE = b"98765432109876543210"  # past 2**64: orjson would make it a float


def test_framer_big_int_flag_false_for_small_numbers() -> None:
    framer = Framer(100)
    assert framer.feed(b"[1, 123456789012345678]\n") == [b"[1, 123456789012345678]"]
    assert framer.may_need_exact is False


def test_framer_big_int_flag_in_one_chunk() -> None:
    framer = Framer(100)
    lines = framer.feed(b"[" + HUGE + b"]\n")
    assert framer.may_need_exact is True
    assert loads(lines[0], check_exact=framer.may_need_exact) == [98765432109876543210]


def test_framer_big_int_flag_across_a_chunk_boundary() -> None:
    framer = Framer(100)
    assert framer.feed(b"[" + HUGE[:10]) == []
    lines = framer.feed(HUGE[10:] + b"]\n")
    assert framer.may_need_exact is True
    assert loads(lines[0], check_exact=framer.may_need_exact) == [98765432109876543210]


def test_framer_big_int_flag_across_small_reads() -> None:
    """Small reads are merged into one piece; the digit run is still seen."""
    framer = Framer(100)
    for i in range(len(HUGE)):
        assert framer.feed(HUGE[i : i + 1]) == []
    assert framer.feed(b"\r") == [HUGE]
    assert framer.may_need_exact is True


def test_framer_big_int_flag_when_the_number_came_in_an_earlier_chunk() -> None:
    """The line is completed by a chunk with no digits; the big int came before."""
    framer = Framer(100)
    assert framer.feed(b"[" + HUGE) == []
    lines = framer.feed(b"]\n")
    assert lines == [b"[" + HUGE + b"]"]
    assert framer.may_need_exact is True
    value = loads(lines[0], check_exact=framer.may_need_exact)
    assert value == [98765432109876543210]
    assert type(value[0]) is int


TINY = b"0." + b"0" * 400 + b"1"  # below the float range, with no exponent


@pytest.mark.parametrize("cut", [1, 2, 10, 19, 20, 200, 401, 402])
@pytest.mark.parametrize("big_ints", [True, False])
def test_framer_flags_a_run_of_zeros_across_a_chunk_boundary(cut: int, big_ints: bool) -> None:
    """
    A literal below the float range needs no exponent: C{0.} and 400 zeros.
    Its run of zeros, whole or cut between reads, flags the line, which is
    then refused, not decoded as C{0.0}, whether or not the framer also
    looks for big integers.
    """
    line = b"[" + TINY + b"]"
    framer = Framer(1000)
    framer.big_ints = big_ints
    assert framer.feed(line[:cut]) == []
    lines = framer.feed(line[cut:] + b"\n")
    assert framer.may_need_exact is True
    with pytest.raises(ParseError, match="underflows"):
        loads(lines[0], check_exact=framer.may_need_exact, big_ints_checked=framer.covers_big_ints)


@pytest.mark.parametrize("pieces", [[b"[" + HUGE + b"]\n"], [b"[" + HUGE[:10], HUGE[10:] + b"]\n"]])
def test_without_big_ints_the_flag_says_it_did_not_cover_them(pieces: list[bytes]) -> None:
    """
    Reads looked at without C{big_ints} (their lines go to msgspec, which
    keeps big integers) say so; a line of theirs that reaches orjson is then
    looked at by L{loads} itself, and stays exact.
    """
    framer = Framer(100)
    framer.big_ints = False
    lines: list[Any] = []
    for piece in pieces:
        lines += framer.feed(piece)
    assert framer.may_need_exact is False
    assert framer.covers_big_ints is False
    value = loads(lines[0], check_exact=False, big_ints_checked=framer.covers_big_ints)
    assert value == [98765432109876543210]
    assert type(value[0]) is int
    # Premise: taking the flag as covering them would have lost the value.
    assert type(loads(lines[0], check_exact=False)[0]) is float


@pytest.mark.parametrize(("first", "then"), [(False, True), (True, False)])
def test_a_line_across_reads_of_both_kinds_is_not_covered(first: bool, then: bool) -> None:
    """
    A line whose pieces came in reads looked at in different ways is not
    covered for big integers, even when its last read was: its digit run
    may sit in a piece looked at without them.
    """
    framer = Framer(100)
    framer.big_ints = first
    assert framer.feed(b"[" + HUGE + b", ") == []
    framer.big_ints = then
    lines = framer.feed(b"1]\n")
    assert framer.covers_big_ints is False
    value = loads(lines[0], check_exact=framer.may_need_exact, big_ints_checked=framer.covers_big_ints)
    assert value == [98765432109876543210, 1]
    framer.big_ints = True
    framer.feed(b"[" + HUGE + b"]\n")
    assert framer.covers_big_ints is True  # the next line, all in reads that were looked at


# --- line-length limit -----------------------------------------------------------------


def test_framer_line_at_limit_is_accepted() -> None:
    framer = Framer(5)
    assert framer.feed(b"12345\n") == [b"12345"]
    assert framer.feed(b"123") == []
    assert framer.feed(b"45") == []
    assert framer.feed(b"\n") == [b"12345"]


def test_line_end_does_not_count_toward_the_limit() -> None:
    framer = Framer(5)
    assert framer.feed(b"12345\r\n12345\r") == [b"12345", b"12345"]
    assert feed_all(framer, [b"12345\r", b"\n123456\r", b"\nok\n"]) == [b"12345", LineTooLong(5), b"ok"]


def test_framer_long_line_in_one_chunk() -> None:
    framer = Framer(5)
    assert framer.feed(b"ok\n123456\nnext\n") == [b"ok", LineTooLong(5), b"next"]
    assert framer.buffered == 0


def test_framer_long_lines_back_to_back() -> None:
    framer = Framer(3)
    assert framer.feed(b"aaaa\nbbbb\nc\n") == [LineTooLong(3), LineTooLong(3), b"c"]


def test_framer_long_tail_after_complete_lines() -> None:
    """The long line starts in a chunk that also completes other lines."""
    framer = Framer(5)
    assert framer.feed(b"ok\n1234567") == [b"ok", LineTooLong(5)]
    assert framer.buffered == 0
    assert framer.feed(b"89") == []
    assert framer.feed(b"0\nnext\n") == [b"next"]


def test_framer_long_line_over_many_chunks_reported_once() -> None:
    framer = Framer(5)
    events = [framer.feed(b"123") for _ in range(6)]
    events.append(framer.feed(b"456\nnext\n"))
    events.append(framer.feed(b"after\n"))
    flat = [event for chunk in events for event in chunk]
    assert flat == [LineTooLong(5), b"next", b"after"]
    assert events[1] == [LineTooLong(5)]  # reported as soon as it is known


def test_framer_long_line_without_newline_then_resync() -> None:
    framer = Framer(5)
    first = list(framer.feed(b"1234567"))
    second = list(framer.feed(b"89\nab\n"))
    assert first == [LineTooLong(5)]
    assert second == [b"ab"]


def test_long_line_skipped_up_to_a_cr() -> None:
    framer = Framer(5)
    assert framer.feed(b"1234567") == [LineTooLong(5)]
    assert framer.feed(b"89\rab\r") == [b"ab"]
    assert framer.feed(b"1234567") == [LineTooLong(5)]
    assert feed_all(framer, [b"89\r", b"\nab\n"]) == [b"ab"]


def test_framer_feed_results_are_independent_lists() -> None:
    """A list returned by feed() is the caller's: later feeds do not change it."""
    framer = Framer(5)
    first = framer.feed(b"1234567")
    snapshot = list(first)
    framer.feed(b"\nab\n")
    assert first == snapshot


def test_framer_long_line_resync_when_newline_is_the_next_byte() -> None:
    framer = Framer(5)
    assert feed_all(framer, [b"123456", b"\n", b"ok\n"]) == [LineTooLong(5), b"ok"]


def test_framer_limit_on_partial_without_newline() -> None:
    framer = Framer(5)
    assert framer.feed(b"12345") == []
    assert framer.partial == b"12345"
    assert framer.feed(b"6") == [LineTooLong(5)]
    assert framer.buffered == 0
    assert framer.unterminated() is None


def test_line_too_long_value_semantics() -> None:
    assert LineTooLong(5) == LineTooLong(5)
    assert LineTooLong(5) != LineTooLong(6)
    assert LineTooLong(5) != 5
    assert hash(LineTooLong(5)) == hash(LineTooLong(5))
    assert repr(LineTooLong(7)) == "LineTooLong(7)"
    assert LineTooLong(9).limit == 9


# --- unterminated: what is complete ----------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b'{"a":1}',
        b"[1]",
        b'"s"',
        b'""',
        b"[]",
        b"{}",
        b'{"a":1}  ',
        b' \t{"a":1} \t',
        b'{"a": [1, {"b": "]}\\"["}], "c": "\\\\"}',
        b'"\\\\"',
        b'"\\""',
        b'["\\\\\\""]',
        '{"é": "😀"}'.encode(),
        b"[1,,2]",  # balanced but invalid: the strict decoder says so
        b"[1}",  # the scanner does not tell brackets from braces
    ],
)
def test_unterminated_complete(data: bytes) -> None:
    framer = Framer(100)
    assert framer.feed(data) == []
    assert framer.unterminated() == data
    assert framer.unterminated() == data  # asking again changes nothing
    assert framer.partial == data


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"  ",
        b"123",
        b"-1.5e3",
        b"true",
        b"null",
        b'{"a":1',
        b'{"a":',
        b"[1,",
        b'"abc',
        b'"abc\\"',
        b'"\\\\\\"',
        b'["]"',
        b'{"a":"}"',
        b'{"a":1} x',
        b'{"a":1}2',
        b"[1]]",
        b"[1][2]",
        b'{"a":1}{"b":2}',
        b'"a" "b"',
        b'"a"]',
        b'[1] "x"',
        b'[1] "]"',
        b"]",
        b"}",
        b"x]",
        b'\\"',
        b"[1]\\",
    ],
)
def test_unterminated_not_complete(data: bytes) -> None:
    framer = Framer(100)
    framer.feed(data)
    assert framer.unterminated() is None
    for i in range(1, len(data)):  # and cut in two anywhere
        framer = Framer(100)
        framer.feed(data[:i])
        framer.unterminated()
        framer.feed(data[i:])
        assert framer.unterminated() is None, (data[:i], data[i:])


def test_unterminated_after_complete_lines() -> None:
    framer = Framer(100)
    assert framer.feed(b'[1]\n{"b":2}') == [b"[1]"]
    assert framer.unterminated() == b'{"b":2}'


def test_unterminated_across_every_byte_boundary() -> None:
    text = b' {"k": ["a\\"]", "\\\\", {"x": [[]]}], "e": "\\u00e9"} '
    for cut in range(len(text) + 1):
        for ask_between in (False, True):
            framer = Framer(1000)
            framer.feed(text[:cut])
            if ask_between:
                expected = text[:cut] if cut >= len(text) - 1 else None
                assert framer.unterminated() == expected, cut
            framer.feed(text[cut:])
            assert framer.unterminated() == text, cut


def test_unterminated_escape_cut_between_reads() -> None:
    framer = Framer(1000)
    for chunk in [b'["a\\', b'"', b"]"]:
        framer.feed(chunk)
        assert framer.unterminated() is None  # the quote is escaped: still a string
    assert framer.feed(b'"]') == []
    assert framer.unterminated() == b'["a\\"]"]'
    assert json.loads(framer.partial) == ['a"]']


def test_unterminated_escape_cut_between_large_pieces() -> None:
    """An escape cut between two pieces that are both scanned in one call."""
    body = b"x" * 700
    framer = Framer(10**4)
    framer.feed(b'["' + body + b"\\")
    framer.feed(b'"' + body + b"\\")
    framer.feed(b"\\" + body)
    assert framer.unterminated() is None  # last byte is not a closer: not scanned yet
    assert framer.scanned == 0
    framer.feed(b'"]')
    assert len(framer._parts) == 4
    assert framer.unterminated() == framer.partial
    text = body.decode()
    assert json.loads(framer.partial) == [text + '"' + text + "\\" + text]


def test_backslash_outside_a_string_escapes_only_a_quote_or_backslash() -> None:
    """
    Not JSON, but the scan must not depend on where pieces are cut: a
    backslash before a bracket leaves the bracket counted, also when the
    two sit in different pieces scanned in one call.
    """
    pieces = [b"[" + b" " * 600 + b"\\", b"[]" + b" " * 600, b"]"]
    line = b"".join(pieces)
    assert reference_complete(line)
    framer = Framer(10**4)
    assert feed_all(framer, pieces) == []
    assert len(framer._parts) == 3
    assert framer.unterminated() == line
    whole = Framer(10**4)
    whole.feed(line)
    assert whole.unterminated() == line


def test_unterminated_once_dead_stays_none_and_stops_scanning() -> None:
    framer = Framer(10**7)
    assert framer.feed(b"[1]") == []
    assert framer.unterminated() == b"[1]"
    framer.feed(b"[1]")
    assert framer.unterminated() is None
    scanned = framer.scanned
    for _ in range(1000):
        framer.feed(b"[1]")  # every read ends like a complete value
        assert framer.unterminated() is None
    assert framer.scanned == scanned


def test_unterminated_is_lazy() -> None:
    framer = Framer(10**6)
    for _ in range(100):
        framer.feed(b'{"a": [1, "x"], "b": {}}')
    assert framer.scanned == 0
    framer.feed(b"\n")
    assert framer.scanned == 0


def test_shape_test_skips_scanning() -> None:
    """Nothing is scanned while the last non-whitespace byte cannot end a text."""
    framer = Framer(10**6)
    framer.feed(b'{"a": [1, 2')
    assert framer.unterminated() is None
    framer.feed(b",   ")
    assert framer.unterminated() is None
    assert framer.scanned == 0
    framer.feed(b"3]")
    assert framer.unterminated() is None
    assert framer.scanned > 0
    framer.feed(b"}  ")
    assert framer.unterminated() == b'{"a": [1, 2,   3]}  '


def test_line_end_resets_the_scanner() -> None:
    framer = Framer(1000)
    framer.feed(b'[["a"]')
    assert framer.unterminated() is None
    assert framer.feed(b"\n]") == [b'[["a"]']
    assert framer.unterminated() is None  # a depth carried over would say "]" closes
    assert framer.feed(b"\r") == [b"]"]
    framer.feed(b'"a')
    assert framer.unterminated() is None
    assert framer.feed(b"\r") == [b'"a']
    framer.feed(b'"a"')
    assert framer.unterminated() == b'"a"'  # not still inside the string before


def test_take_partial() -> None:
    framer = Framer(100)
    framer.feed(b'[1]\n{"a":2}')
    assert framer.unterminated() == b'{"a":2}'
    assert framer.take_partial() == b'{"a":2}'
    assert framer.buffered == 0
    assert framer.unterminated() is None
    assert framer.feed(b"[3]\n") == [b"[3]"]


def test_take_partial_resets_the_scanner() -> None:
    framer = Framer(100)
    framer.feed(b"[100]")
    assert framer.unterminated() == b"[100]"
    framer.take_partial()
    framer.feed(b'["a"')
    assert framer.unterminated() is None  # not still "done"
    framer.feed(b"]")
    assert framer.unterminated() == b'["a"]'
    framer.take_partial()
    framer.feed(b"[1]]")
    assert framer.unterminated() is None  # can never be one text
    framer.take_partial()
    framer.feed(b"[2]")
    assert framer.unterminated() == b"[2]"  # not still "dead"
    framer.take_partial(discard_rest=True)
    framer.feed(b'x"]\n{"a":')
    assert framer.unterminated() is None
    framer.take_partial()
    framer.feed(b"{}")
    assert framer.unterminated() == b"{}"


def test_take_partial_discard_rest() -> None:
    framer = Framer(100)
    framer.feed(b'{"a": x}')
    assert framer.take_partial(discard_rest=True) == b'{"a": x}'
    assert framer.feed(b"rest of the bad line") == []
    assert framer.unterminated() is None
    assert framer.feed(b' still bad"]}\n[4]\n') == [b"[4]"]
    assert framer.feed(b"[5]") == []
    assert framer.unterminated() == b"[5]"


def test_take_partial_discard_rest_ends_at_a_cr() -> None:
    framer = Framer(100)
    framer.feed(b"[1] x")
    framer.take_partial(discard_rest=True)
    assert framer.feed(b"bad\r") == []
    assert framer.feed(b"\n[2]") == []
    assert framer.unterminated() == b"[2]"


def test_take_partial_discard_rest_when_next_byte_is_newline() -> None:
    framer = Framer(100)
    framer.feed(b"[1] x")
    framer.take_partial(discard_rest=True)
    assert framer.feed(b"\n[2]\n") == [b"[2]"]


def test_take_partial_empty() -> None:
    framer = Framer(100)
    assert framer.take_partial() == b""
    assert framer.feed(b"a\n") == [b"a"]


def test_partial_then_more_bytes_keeps_the_scan_position() -> None:
    """Reading C{partial} joins the pieces; the scan goes on where it was."""
    framer = Framer(10**4)
    framer.feed(b'{"a": "' + b"]" * 600)
    framer.feed(b'"' * 1 + b" " * 600)
    framer.feed(b', "b": "}"')
    assert framer.unterminated() is None
    scanned = framer.scanned
    assert framer.partial.endswith(b'"}"')
    framer.feed(b"}")
    assert framer.unterminated() == framer.partial
    assert framer.scanned - scanned < 10  # the 1218 bytes before were not scanned again


def test_unterminated_none_while_discarding() -> None:
    framer = Framer(4)
    assert framer.feed(b'["abcdef"]') == [LineTooLong(4)]
    assert framer.unterminated() is None
    assert framer.feed(b'["x"]') == []
    assert framer.unterminated() is None


# --- a reference: the same structural rule, a byte at a time ---------------------------


def reference_complete(line: bytes) -> bool:
    """
    The rule L{Framer.unterminated} implements, written plainly: one value
    that opens with a bracket, brace or quote and closes (strings and
    escapes tracked, brackets and braces counted alike), then whitespace.
    A backslash followed by a quote or a backslash makes a pair that is
    neither structure nor whitespace, inside strings or out.
    """
    state, depth, i = "start", 0, 0
    while i < len(line):
        byte = line[i : i + 1]
        i += 1
        if byte == b"\\" and line[i : i + 1] in (b'"', b"\\"):
            i += 1
            if state in ("start", "done"):
                return False
            continue
        if state == "start":
            if byte in b" \t":
                continue
            if byte == b'"':
                state = "string"
            elif byte in b"[{":
                state, depth = "value", 1
            else:
                return False
        elif state == "string":
            if byte == b'"':
                state = "value" if depth else "done"
        elif state == "value":
            if byte == b'"':
                state = "string"
            elif byte in b"[{":
                depth += 1
            elif byte in b"]}":
                depth -= 1
                if not depth:
                    state = "done"
        elif byte not in b" \t":
            return False
    return state == "done"


def model_lines(stream: bytes) -> list[bytes]:
    """Complete lines and the unfinished one, as the framer should cut them."""
    return stream.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")


structural_bytes = st.binary(max_size=0) | st.lists(
    st.sampled_from([b"[", b"]", b"{", b"}", b'"', b"\\", b" ", b"\t", b"a", b"1", b",", b"\r", b"\n"]),
    max_size=60,
).map(b"".join)


@settings(max_examples=250, deadline=None)
@given(structural_bytes, st.data())
def test_scanner_agrees_with_the_reference(stream: bytes, data: st.DataObject) -> None:
    """Any bytes, cut anywhere, asked any time: the answer the plain rule gives."""
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
    framer = Framer(10**6)
    fed = b""
    out: list[Event] = []
    for chunk in split_at(stream, cuts):
        out.extend(framer.feed(chunk))
        fed += chunk
        *done, unfinished = model_lines(fed)
        assert out == done
        if data.draw(st.booleans()):
            assert framer.partial == unfinished
        expected = unfinished if reference_complete(unfinished) else None
        if data.draw(st.booleans()):
            assert framer.unterminated() == expected, (fed, cuts)
    assert framer.unterminated() == (unfinished if reference_complete(unfinished) else None)


def random_value(rnd: random.Random, depth: int = 0) -> Any:
    """A nested value with long strings full of quotes, backslashes and brackets."""
    kind = rnd.random()
    if depth > 6 or kind < 0.3:
        return "".join(rnd.choice('ab"\\[]{} ') for _ in range(rnd.choice([0, 5, 300, 800])))
    if kind < 0.4:
        return rnd.choice([1, -2.5, None, True])
    if kind < 0.7:
        return [random_value(rnd, depth + 1) for _ in range(rnd.randint(0, 4))]
    return {str(i): random_value(rnd, depth + 1) for i in range(rnd.randint(0, 4))}


def test_scanner_agrees_with_the_reference_on_large_pieces() -> None:
    """
    Texts of a few KB, some with a byte changed, in reads of every size:
    pieces over the small-read size, so one call scans across pieces.
    """
    rnd = random.Random(7)
    for case in range(300):
        value = random_value(rnd)
        line = json.dumps(value, separators=rnd.choice([(",", ":"), (", ", ": ")])).encode()
        if case % 2:
            at = rnd.randrange(len(line) + 1)
            line = line[:at] + rnd.choice([b'"', b"\\", b"[", b"]", b"}", b" "]) + line[at:]
        framer = Framer(10**6)
        pos = 0
        while pos < len(line):
            size = rnd.choice([1, 3, 40, 600, 1500])
            framer.feed(line[pos : pos + size])
            pos += size
            if rnd.random() < 0.3:
                expected = line[:pos] if reference_complete(line[:pos]) else None
                assert framer.unterminated() == expected
        complete = reference_complete(line)
        if not case % 2:
            assert complete == isinstance(value, (str, list, dict))
        assert framer.unterminated() == (line if complete else None)


# --- property tests: chunking, JSON texts ----------------------------------------------

line_bytes = st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b""))
line_end = st.sampled_from([b"\n", b"\r\n", b"\r"])


@SETTINGS
@given(st.lists(st.tuples(line_bytes, line_end), max_size=8), st.data())
def test_chunking_does_not_change_lines(lines: list[tuple[bytes, bytes]], data: st.DataObject) -> None:
    stream = b"".join(line + end for line, end in lines)
    expected = model_lines(stream)[:-1]  # a CR ending a line then a LF ending the next: one end
    assert len(expected) <= len(lines)
    assert Framer(100).feed(stream) == expected
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=10))
    framer = Framer(100)
    assert feed_all(framer, split_at(stream, cuts)) == expected


@SETTINGS
@given(st.binary(max_size=80), st.data())
def test_any_stream_in_any_chunks_gives_the_same_events(stream: bytes, data: st.DataObject) -> None:
    limit = data.draw(st.integers(1, 12))
    whole = Framer(limit).feed(stream)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
    assert feed_all(Framer(limit), split_at(stream, cuts)) == whole
    *lines, _ = model_lines(stream)
    assert whole == [line if len(line) <= limit else LineTooLong(limit) for line in lines] + (
        [LineTooLong(limit)] if len(model_lines(stream)[-1]) > limit else []
    )


@SETTINGS
@given(st.lists(line_bytes, max_size=8), line_bytes, st.integers(1, 12), st.data())
def test_chunking_does_not_change_events_with_long_lines(
    lines: list[bytes], tail: bytes, limit: int, data: st.DataObject
) -> None:
    """With a line-length limit, every chunking gives the same lines and events."""
    stream = b"".join(line + b"\n" for line in lines) + tail
    expected: list[Event] = [line if len(line) <= limit else LineTooLong(limit) for line in lines]
    if len(tail) > limit:
        expected.append(LineTooLong(limit))
    assert Framer(limit).feed(stream) == expected
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=10))
    framer = Framer(limit)
    assert feed_all(framer, split_at(stream, cuts)) == expected


@SETTINGS
@given(st.lists(st.binary(max_size=50), max_size=10), st.integers(1, 40))
def test_framer_never_raises(chunks: list[bytes], limit: int) -> None:
    framer = Framer(limit)
    total = 0
    for chunk in chunks:
        for event in framer.feed(chunk):
            assert isinstance(event, (bytes, LineTooLong))
            if isinstance(event, bytes):
                assert b"\n" not in event
                assert b"\r" not in event
                assert len(event) <= limit
            total += 1
        assert framer.buffered <= limit
        candidate = framer.unterminated()
        assert candidate is None or candidate == framer.partial
    line_ends = sum(chunk.count(b"\n") + chunk.count(b"\r") for chunk in chunks)
    assert total <= line_ends + len(chunks)


# Strings full of what could fool a structural scan: brackets, quotes, backslashes.
tricky_text = st.text(st.sampled_from('[]{}"\\ab \t/é😀\u2028'), max_size=10) | st.text(max_size=10)
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        tricky_text,
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(tricky_text, children, max_size=5),
    ),
    max_leaves=20,
)
blank = st.text(st.sampled_from(" \t"), max_size=3)


@st.composite
def json_texts(draw: st.DrawFn) -> tuple[bytes, bytes, bool]:
    """(text, trailing whitespace, whether the top level may be returned)."""
    value = draw(json_values)
    item = draw(blank) + "," + draw(blank)
    key = draw(blank) + ":" + draw(blank)
    text = json.dumps(value, separators=(item, key), ensure_ascii=draw(st.booleans()))
    lead, trail = draw(blank), draw(blank)
    return (lead + text).encode(), trail.encode(), isinstance(value, (dict, list, str))


@SETTINGS
@given(json_texts())
def test_every_prefix_of_a_json_text(case: tuple[bytes, bytes, bool]) -> None:
    """Complete exactly when the whole text is there (and only whitespace after)."""
    text, trail, returned = case
    data = text + trail
    for end in range(len(data) + 1):
        framer = Framer(10**6)
        framer.feed(data[:end])
        expected = data[:end] if returned and end >= len(text) else None
        assert framer.unterminated() == expected, data[:end]


@SETTINGS
@given(json_texts(), st.data())
def test_json_text_fed_in_chunks(case: tuple[bytes, bytes, bool], data: st.DataObject) -> None:
    text, trail, returned = case
    stream = text + trail
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=10))
    framer = Framer(10**6)
    fed = 0
    for chunk in split_at(stream, cuts):
        assert framer.feed(chunk) == []
        fed += len(chunk)
        got = framer.unterminated()
        assert got == (stream[:fed] if returned and fed >= len(text) else None)
        if got is not None:
            assert json.loads(got) == json.loads(text)
    end = data.draw(line_end)
    assert framer.feed(end) == [stream]
    assert framer.unterminated() is None


@SETTINGS
@given(json_texts())
def test_json_text_byte_by_byte(case: tuple[bytes, bytes, bool]) -> None:
    text, trail, returned = case
    stream = text + trail
    framer = Framer(10**6)
    for i in range(len(stream)):
        framer.feed(stream[i : i + 1])
        assert framer.unterminated() == (stream[: i + 1] if returned and i + 1 >= len(text) else None)
    assert framer.scanned <= 3 * len(stream)


# --- round trips through the framer and the codec -------------------------------------

integers = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64),
    st.integers(min_value=-(10**60), max_value=10**60),
    st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64 - 1, 2**64, -(2**64) - 1]),
)
codec_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        integers,
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(st.characters(exclude_categories=("Cs",)), max_size=20),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.text(max_size=10), children, max_size=5),
    ),
    max_leaves=20,
)


try:
    from tests.test_codec_properties import assert_same
except ImportError:  # run from inside tests/
    from test_codec_properties import assert_same  # type: ignore[no-redef]


@SETTINGS
@given(codec_values, line_end)
def test_round_trip_through_framer(value: Any, end: bytes) -> None:
    line = dumps_line(value)
    assert line == dumps(value) + b"\n"
    assert line.count(b"\n") == 1
    framer = Framer(len(line))
    lines = framer.feed(line[:-1] + end)
    assert len(lines) == 1
    assert isinstance(lines[0], bytes)
    assert_same(loads(lines[0], check_exact=framer.may_need_exact), value)


@SETTINGS
@given(codec_values, st.data())
def test_round_trip_in_chunks(value: Any, data: st.DataObject) -> None:
    line = dumps_line(value)
    cuts = data.draw(st.lists(st.integers(0, len(line)), max_size=6))
    framer = Framer(len(line))
    out: list[Any] = []
    for chunk in split_at(line, cuts):
        lines = framer.feed(chunk)
        # as the protocol does: skip the big-int scan when the framer saw none
        out.extend(loads(line, check_exact=framer.may_need_exact) for line in lines)
    assert len(out) == 1
    assert_same(out[0], value)


# --- linear work in every case ---------------------------------------------------------

#: Crafted unfinished lines: (head, unit, complete).  The line is head + unit * k;
#: reads are cut at unit boundaries so that each ends like a complete text (with "}",
#: "]" or '"') and the scanner cannot skip it: the worst case for its laziness.
CRAFTED: dict[str, tuple[bytes, bytes, bool]] = {
    "escaped-quotes-in-array": (b'["', b'\\"', False),
    "escaped-quotes-top-level-string": (b'"', b'\\"', False),
    "string-every-read-ends-in-quote": (b'["', b'ab\\"', False),
    "escaped-backslash-then-quote": (b'["', b'\\\\\\"', False),
    "sibling-arrays": (b"[[]", b",[]", False),
    "nested-pairs": (b"[[[]]", b",[[]]", False),
    "deep-objects": (b'{"a"', b':{"a"', False),
    "many-short-strings": (b'["a"', b',"a"', False),
    "brackets-in-strings": (b'["]"', b',"]"', False),
    "deep-arrays-with-strings": (b"[", b'[""', False),
    "whitespace-after-a-bracket": (b"[[1]", b" ", False),
}


def crafted_reads(head: bytes, unit: bytes, size: int, most_units: int, seed: int) -> Iterator[bytes]:
    rnd = random.Random(seed)
    yield head
    left = (size - len(head)) // len(unit)
    while left > 0:
        k = min(left, rnd.randint(1, most_units))
        left -= k
        yield unit * k


def closing_brackets_reads(size: int, most: int, seed: int) -> Iterator[bytes]:
    """Deep nesting, then the closing brackets, one short of the top level."""
    rnd = random.Random(seed)
    yield b"[" * (size // 2)
    left = size // 2 - 1
    while left > 0:
        k = min(left, rnd.randint(1, most))
        left -= k
        yield b"]" * k


def run_reads(reads: Iterator[bytes], size: int, complete: bool) -> Framer:
    framer = Framer(2 * size)
    total = 0
    for chunk in reads:
        assert framer.feed(chunk) == []
        total += len(chunk)
        got = framer.unterminated()
        assert (got is not None) == complete
        if got is not None:
            assert len(got) == total
    return framer


@pytest.mark.parametrize(
    ("size", "most_units"), [(100_000, 8), (1_000_000, 4096)], ids=["100KB-tiny-reads", "1MB-larger-reads"]
)
@pytest.mark.parametrize("case", list(CRAFTED), ids=list(CRAFTED))
def test_crafted_unfinished_lines_cost_linear_work(case: str, size: int, most_units: int) -> None:
    head, unit, complete = CRAFTED[case]
    framer = run_reads(crafted_reads(head, unit, size, most_units, seed=size), size, complete)
    # Every byte was scanned (each read ends like a complete text), and only a
    # few times: re-scanning the line on each read would cost size**2 / read size.
    assert framer.buffered <= framer.scanned <= 3 * framer.buffered, framer.scanned


@pytest.mark.parametrize(("size", "most"), [(100_000, 16), (1_000_000, 4096)])
def test_closing_deep_nesting_costs_linear_work(size: int, most: int) -> None:
    framer = run_reads(closing_brackets_reads(size, most, seed=1), size, complete=False)
    assert framer.buffered // 2 <= framer.scanned <= 3 * framer.buffered


def test_hostile_trickle_into_a_large_string() -> None:
    """0.9 MB ending in a quote, then 4 bytes at a time: each read costs its own bytes."""
    framer = Framer(2**20)
    framer.feed(b'["' + b"x" * 900_000 + b'\\"')
    assert framer.unterminated() is None
    before = framer.scanned
    assert before <= 2 * 900_010
    for _ in range(5000):
        framer.feed(b'ab\\"')
        assert framer.unterminated() is None
    assert framer.scanned - before <= 2 * 4 * 5000
    framer.feed(b'"]')
    assert framer.unterminated() == framer.partial


@pytest.mark.parametrize(
    ("head", "size"),
    [(b"", 100_000), (b" [1", 50_000), (b"[[1]", 50_000), (b'{"a":1}', 10_000), (b'"x"', 10_000)],
)
def test_whitespace_trickled_a_byte_at_a_time(head: bytes, size: int) -> None:
    """
    A line of whitespace, or whitespace after (part of) a value, costs each
    byte once.  (A complete text is returned, joined, on every call: the
    caller takes it at once, so those cases are shorter.)
    """
    framer = Framer(2**20)
    framer.feed(head)
    complete = head in (b'{"a":1}', b'"x"')
    for _ in range(size):
        framer.feed(b" ")
        got = framer.unterminated()
        assert got == (framer.partial if complete else None)
    assert framer.buffered == len(head) + size
    assert framer.scanned <= framer.buffered + 16
    if head == b"[[1]":
        assert framer.scanned >= size  # scanned, not skipped by the shape test
    assert len(framer._parts) < size // 256


@pytest.mark.parametrize("cut", range(1, 8))
def test_framer_underflow_flag_across_a_chunk_boundary(cut: int) -> None:
    """An exponent "e-" cut between two reads still routes the line to the exact path."""
    line = b"[1e-400]"
    framer = Framer(100)
    assert framer.feed(line[:cut]) == []
    lines = framer.feed(line[cut:] + b"\n")
    assert framer.may_need_exact is True
    with pytest.raises(ParseError, match="underflows"):
        loads(lines[0], check_exact=framer.may_need_exact)


def test_framer_exact_flag_false_without_exponent_minus() -> None:
    framer = Framer(100)
    framer.feed(b'[-1, 2e5, "a-b"]\n')
    assert framer.may_need_exact is False
    framer.feed(b'["home-page"]\n')
    assert framer.may_need_exact is True  # conservative: the line itself is then checked
