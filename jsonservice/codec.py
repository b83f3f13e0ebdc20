"""
Bytes to JSON values and back: framing, strictness, limits.  Sans-IO.

Nothing here does I/O or imports Twisted.  L{Framer} turns a byte stream
into lines (now L{jsonservice.framing}); L{loads} turns one line into a Python value (strict RFC 8259,
exact integers, bounded depth); L{dumps_line} turns a value into one line.

Decoding is orjson's, with one correction: orjson turns integers beyond
64 bits into floats, which would silently change a value.  Input that may
hold such an integer (a run of 19 or more digits) is decoded by the exact
fallback decoder instead, which applies the same rules as orjson.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import math
import re
import sys
import uuid
from typing import Any, Final

import orjson

from .errors import ParseError
from .limits import ORJSON_MAX_DEPTH

__all__ = [
    "EncodeError",
    "dumps",
    "dumps_line",
    "loads",
    "loads_unterminated",
    "may_hold_big_int",
]

_DUMPS_OPTIONS: Final = orjson.OPT_NON_STR_KEYS
_LINE_OPTIONS: Final = orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE

# Digits map to "0", everything else to " ": a run of 19 digits then shows
# up as a substring search, which is far cheaper than a regular expression.
_DIGITS_ONLY: Final = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_RUN: Final = b"0" * 19
_STRING: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
#: Values that cannot hold a float (their encoding needs no NaN check).
_NO_FLOATS: Final = frozenset({str, int, bool, type(None)})


class EncodeError(ValueError):
    """
    A value cannot be written as strict JSON (unsupported type, NaN or an
    infinity, a non-string key orjson cannot convert).
    """


def may_hold_big_int(data: bytes) -> bool:
    """
    Return whether C{data} has a run of 19 or more ASCII digits, the
    shortest integer literal that may not fit in 64 bits.  A cheap,
    conservative test: digits inside strings count too.
    """
    return _LONG_RUN in data.translate(_DIGITS_ONLY)


def _depth_of(value: Any) -> int:
    """Nesting depth of a decoded value: 0 for a scalar, 1 for C{[]}."""
    depth = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            depth = max(depth, level)
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            depth = max(depth, level)
            stack.extend((v, level + 1) for v in item)
    return depth


def _text_depth(data: bytes) -> int:
    """Nesting depth of JSON text, ignoring brackets inside strings."""
    depth = deepest = 0
    for byte in _STRING.sub(b'""', data).translate(None, _BRACKETS):
        if byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _too_deep(max_depth: int) -> ParseError:
    return ParseError(data=f"nesting deeper than {max_depth}")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise ValueError(f"number {text} is infinity when parsed as double")
    return number


def _check_strings(value: Any) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise ParseError(data="lone surrogate in string")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _loads_exact(data: bytes, max_depth: int) -> Any:
    """
    The fallback decoder: stdlib C{json} with orjson's rules (no NaN or
    infinities, UTF-8 only, no lone surrogates, bounded depth), keeping
    integers of any size exact.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(data=f"invalid UTF-8 at byte {exc.start}") from None
    if _text_depth(data) > max_depth:
        raise _too_deep(max_depth)
    limit = sys.getrecursionlimit()
    try:
        # The C scanner recurses once per level; make room for max_depth.
        sys.setrecursionlimit(limit + max_depth + 64)
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        where = len(text[: exc.pos].encode("utf-8", "surrogatepass"))
        raise ParseError(data=f"{exc.msg.removesuffix(' at')} at byte {where}") from None
    except ValueError as exc:
        raise ParseError(data=str(exc)) from None
    finally:
        sys.setrecursionlimit(limit)
    _check_strings(value)
    return value


def _byte_offset(data: bytes, char_pos: int) -> int:
    """orjson reports positions in characters; say where that is in bytes."""
    if data.isascii():
        return char_pos
    return len(data.decode("utf-8", "replace")[:char_pos].encode("utf-8", "replace"))


def _describe(exc: orjson.JSONDecodeError, data: bytes) -> str:
    return f"{exc.msg} at byte {_byte_offset(data, exc.pos)}"


def loads(data: bytes, max_depth: int = ORJSON_MAX_DEPTH, *, check_big_int: bool = True) -> Any:
    """
    Decode one JSON text, strictly.

    @param data: the text (surrounding whitespace, C{\\r} included, is fine).
    @param max_depth: deepest nesting accepted, at most 1024.
    @param check_big_int: pass L{False} only when L{may_hold_big_int} was
        already false for bytes that include C{data}.
    @raise ParseError: not strict JSON, or nested deeper than C{max_depth};
        C{data} says what and where.
    """
    if check_big_int and may_hold_big_int(data):
        return _loads_exact(data, max_depth)
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if exc.msg.startswith("depth limit") or (
            # orjson's wording for some over-deep input
            exc.msg.startswith("failed to allocate") and _text_depth(data) > max_depth
        ):
            raise _too_deep(min(max_depth, ORJSON_MAX_DEPTH)) from None
        raise ParseError(data=_describe(exc, data)) from None
    if (
        max_depth < ORJSON_MAX_DEPTH
        and data.count(b"[") + data.count(b"{") > max_depth
        and _depth_of(value) > max_depth
    ):
        raise _too_deep(max_depth)
    return value


def loads_unterminated(data: bytes, max_depth: int = ORJSON_MAX_DEPTH) -> tuple[bool, Any]:
    """
    Decode a buffer that may hold a JSON text not yet complete.

    @return: C{(True, value)} when C{data} is one complete JSON text,
        C{(False, None)} when it is a prefix of one (more may come).
    @raise ParseError: when no continuation could make it valid.
    """
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        # A prefix of a valid text only fails where the data ends.
        stripped = data.rstrip()
        end = len(stripped) if stripped.isascii() else len(stripped.decode("utf-8", "replace"))
        if exc.pos >= end and not exc.msg.startswith("depth limit"):
            return False, None
        if "UTF-8" in exc.msg:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as bad:
                if bad.end == len(data) and bad.reason == "unexpected end of data":
                    return False, None  # cut inside a character: more may come
        return True, loads(data, max_depth)  # raises, with the same message
    if may_hold_big_int(data) or (
        max_depth < ORJSON_MAX_DEPTH and data.count(b"[") + data.count(b"{") > max_depth
    ):
        return True, loads(data, max_depth)
    return True, value


def _has_non_finite(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return False


def _like_orjson(obj: Any) -> Any:
    """
    The fallback encoder's C{default}: the types orjson writes natively
    (dates and times, UUIDs, dataclasses, enums), written the same way, so a
    value does not change form because a big integer sits next to it.
    """
    if isinstance(obj, (datetime.datetime, datetime.date, datetime.time)):
        return obj.isoformat()
    if isinstance(obj, uuid.UUID):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {field.name: getattr(obj, field.name) for field in dataclasses.fields(obj)}
    raise TypeError(f"Type is not JSON serializable: {type(obj).__name__}")


def _dumps_exact(value: Any, newline: bool) -> bytes:
    limit = sys.getrecursionlimit()
    try:
        # The C encoder recurses once per level; allow what loads allows.
        sys.setrecursionlimit(limit + 2 * ORJSON_MAX_DEPTH + 64)
        text = json.dumps(
            value, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_like_orjson
        )
    except (TypeError, ValueError) as exc:
        raise EncodeError(str(exc)) from None
    except RecursionError:
        raise EncodeError(f"nesting deeper than {ORJSON_MAX_DEPTH}") from None
    finally:
        sys.setrecursionlimit(limit)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        raise EncodeError("str is not valid UTF-8: surrogates not allowed") from None
    return data + b"\n" if newline else data


def _dumps(value: Any, options: int, newline: bool) -> bytes:
    try:
        data = orjson.dumps(value, option=options)
    except orjson.JSONEncodeError as exc:
        # orjson refuses integers past 64 bits and nesting past 255 levels:
        # the exact encoder writes both (a value this side accepted is deep
        # at most max_depth, so it can always be echoed).
        if "64-bit" in str(exc) or "Recursion" in str(exc):
            return _dumps_exact(value, newline)
        raise EncodeError(str(exc)) from None
    # orjson writes NaN and infinities as null; refuse rather than change them.
    if value.__class__ not in _NO_FLOATS and b"null" in data and _has_non_finite(value):
        raise EncodeError("NaN and infinities cannot be written as JSON")
    return data


def dumps(value: Any) -> bytes:
    """
    Encode a value as compact JSON (UTF-8, no spaces, no newline).

    Integers of any size are written exactly.  Dict keys that are not
    strings are converted as the stdlib C{json} module does.

    @raise EncodeError: the value cannot be written as strict JSON.
    """
    return _dumps(value, _DUMPS_OPTIONS, False)


def dumps_line(value: Any) -> bytes:
    """
    Like L{dumps}, with the terminating C{\\n} appended.
    """
    return _dumps(value, _LINE_OPTIONS, True)
