"""
JSON values to bytes and back: strictness, limits.  Sans-IO.

Nothing here does I/O or imports Twisted.  L{loads} turns one line into a
Python value (strict RFC 8259, exact integers, bounded depth);
L{dumps_line} turns a value into one line.  Lines come from
L{jsonservice.framing}.

Decoding is orjson's, with corrections where orjson would silently change
a value:

  - orjson turns integers beyond 64 bits into floats.  Input that may hold
    one (a run of 19 or more digits) is decoded by the exact fallback
    decoder instead, which applies the same rules as orjson.  (The
    msgspec decoders of the hot path, L{shape_decoder}, keep such integers
    exact themselves.)
  - orjson turns a number below the float range (C{1e-400}) into C{0.0}.
    Input holding a literal that could underflow (a digit, then C{e-} and an
    exponent of three digits or more) goes to the fallback decoder, which
    refuses a nonzero literal that rounds to zero.  Literal zeros
    (C{0e-400}) and literals that round to a subnormal stay as they are.

Integers are exact up to the interpreter's limit on int/str conversion,
C{sys.get_int_max_str_digits()} (4300 digits unless the application
changes it; this module never does).  Longer integers are refused, not
changed: decoding raises L{ParseError} ("integer of 5000 digits exceeds the
4300-digit limit"), encoding raises L{EncodeError}.  The limit exists
because conversion costs time quadratic in the number of digits, and
decoding runs before the peer has authenticated.

Every step of decoding is linear in the size of the input, on every path
(orjson, the fallback decoder, the nesting check, error positions).

Encoding writes what orjson writes natively (UUIDs, dataclasses, enums)
and, when orjson refuses a type, tries again with the JSON forms of the
rich types typed handlers use: dates and times (C{isoformat()}; orjson's
own writer is bypassed, as it changes some times), C{NamedTuple}s (arrays),
C{Decimal} (its exact
text, a string), C{timedelta} (an ISO 8601 duration), msgspec C{Struct}s
(as msgspec encodes them) and pydantic models (C{model_dump(mode="json",
by_alias=True)}).  Values without orjson's refusal never pay for that.
Anything else (a set, bytes, an arbitrary object) is still refused, and
NaN or an infinity anywhere, inside a rich value too, is refused rather
than written as C{null}.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import decimal
import enum
import json
import math
import re
import sys
import uuid
from collections.abc import Callable
from itertools import accumulate
from typing import Any, Final, TypeVar

import msgspec
import orjson
from orjson import dumps as _orjson_dumps
from orjson import loads as _orjson_loads

from .errors import ParseError
from .limits import ORJSON_MAX_DEPTH

__all__ = [
    "EncodeError",
    "dumps",
    "dumps_line",
    "dumps_member",
    "json_form",
    "loads",
    "may_hold_big_int",
    "may_need_exact",
    "shape_decoder",
]

S = TypeVar("S", bound=msgspec.Struct)

# Dates and times are written by _rich (isoformat), not by orjson: orjson
# 3.13 writes a time's microseconds 10000-99999 with five digits
# (time(0, 0, 0, 10000) as "00:00:00.10000", ten times the value).
_DUMPS_OPTIONS: Final = orjson.OPT_PASSTHROUGH_DATETIME
_LINE_OPTIONS: Final = _DUMPS_OPTIONS | orjson.OPT_APPEND_NEWLINE
# A dict key that is not exactly a str: the value's keys are written as
# text (_key_text) and it goes to the exact encoder.  (orjson's
# OPT_NON_STR_KEYS writes small float keys and times with microseconds in
# its own way, and slows every dict down: 243 against 190 ns for a
# three-key reply.)
_KEY_REFUSED: Final = "Dict key must be str"
# How deep _text_keys goes: what loads accepts, with room for the reply around it.
_TEXT_KEYS_DEPTH: Final = ORJSON_MAX_DEPTH + 64

# Digits map to "0", everything else to " ": a run of 19 digits then shows
# up as a substring search, which is far cheaper than a regular expression.
# (Searched in raw text, it is a run of 19 zeros: the fraction of a literal
# with no exponent starts with hundreds of them to fall below the float range.)
_DIGITS_ONLY: Final = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_RUN: Final = b"0" * 19
# The same, keeping "e", "E" (as "e") and "-": an exponent "e-" shows up too.
_NUMBER_CHARS: Final = bytes(
    0x30 if 0x30 <= b <= 0x39 else 0x65 if b in b"eE" else 0x2D if b == 0x2D else 0x20 for b in range(256)
)
# CPython's words for an integer past sys.get_int_max_str_digits().
_INT_LIMIT: Final = re.compile(r"Exceeds the limit \((\d+) digits\).*value has (\d+) digits")
_DEPTH_STEP: Final = tuple(1 if b in b"[{" else -1 for b in range(256))
# A float literal that may not fit a double: a three-digit exponent.
_FLOAT_RISK: Final = re.compile(rb"[eE][-+]?0*[1-9][0-9][0-9]")
# A literal that may fall below the float range: mantissas on the orjson
# path are shorter than 19 digits, so it takes an exponent below -99.
_UNDERFLOW: Final = re.compile(rb"[0-9][eE]-0*[1-9][0-9][0-9]")
# A string once its escapes are gone (an unclosed one runs to the end).
_PLAIN_STRING: Final = re.compile(rb'"[^"]*(?:"|\Z)')
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")
_SURROGATE: Final = re.compile(f"[{chr(0xD800)}-{chr(0xDFFF)}]")
# Where a lone surrogate can come from once the input is valid UTF-8.
_SURROGATE_ESCAPE: Final = re.compile(rb"\\u[dD][89a-fA-F]")
_NON_FINITE: Final = "NaN and infinities cannot be written as JSON"
#: Values that cannot hold a float (their encoding needs no NaN check).
_NO_FLOATS: Final = frozenset({str, int, bool, type(None)})
_WHOLE: Final = object()
# orjson writes at most this many levels of nesting (it refuses 255).
_ORJSON_LEVELS: Final = 254
# Present since CPython 3.10.7 / 3.11; older interpreters get its default.
_int_digit_limit: Callable[[], int] = getattr(sys, "get_int_max_str_digits", lambda: 4300)


class EncodeError(ValueError):
    """
    A value cannot be written as strict JSON (unsupported type, NaN or an
    infinity, a non-string key orjson cannot convert, an integer past the
    int/str conversion limit).
    """


def may_hold_big_int(data: bytes) -> bool:
    """
    Return whether C{data} has a run of 19 or more ASCII digits, the
    shortest integer literal that may not fit in 64 bits.  A cheap,
    conservative test: digits inside strings count too.
    """
    return data.translate(_DIGITS_ONLY).find(_LONG_RUN) != -1


def may_need_exact(data: bytes, big_ints: bool = True) -> bool:
    """
    Return whether C{data} may hold a number that the fast decoders would
    change: a literal that falls below the float range (C{1e-400}, or C{0.}
    and hundreds of zeros: both msgspec and orjson make it C{0.0}), seen as
    an exponent C{e-} or C{E-} or a run of 19 zeros; and with C{big_ints},
    a run of 19 or more digits (L{may_hold_big_int}: an integer past 64
    bits, which orjson makes a float).  For a whole read at once: the
    framer asks it per read, and only lines of a read where it says yes are
    checked one by one.

    @param big_ints: L{False} when the lines go to msgspec's decoders
        (L{shape_decoder}), which keep such integers exact: then no copy of
        C{data} is made, only searches.
    """
    if big_ints:
        # One translate and two searches.
        numbers = data.translate(_NUMBER_CHARS)
        return numbers.find(_LONG_RUN) != -1 or (45 in numbers and numbers.find(b"e-") != -1)
    # (A search for the two-byte "e-" is slow in text full of "e"s: a
    # minus sign, rare in most traffic, is looked for first, by memchr.)
    return data.find(_LONG_RUN) != -1 or (45 in data and (data.find(b"e-") != -1 or data.find(b"E-") != -1))


def _needs_exact(data: bytes) -> bool:
    """Whether C{data} itself needs the exact path: the precise test of one line."""
    return may_hold_big_int(data) or _UNDERFLOW.search(data) is not None


def _may_underflow(data: bytes) -> bool:
    """Whether C{data} has a number literal that could underflow (or text like one)."""
    return _UNDERFLOW.search(data) is not None


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


def _deeper_than(data: bytes, limit: int) -> bool:
    """
    Whether JSON text nests deeper than C{limit}, ignoring brackets inside
    strings, in linear time.
    """
    # Escaped backslashes go first, then escaped quotes, so every quote left
    # opens or closes a string; "" pairs carry nothing and are dropped.  One
    # expression matching strings with their escapes would restart at every
    # escaped quote of an unclosed string: quadratic.
    plain = data.replace(b"\\\\", b"").replace(b'\\"', b"").replace(b'""', b"")
    brackets = _PLAIN_STRING.sub(b"", plain).translate(None, _NOT_BRACKETS)
    if len(brackets) <= limit:
        return False
    # The running depth is a prefix sum of +1/-1: C iterators, no Python loop.
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets))) > limit


def _too_deep(max_depth: int) -> ParseError:
    return ParseError(data=f"nesting deeper than {max_depth}")


def _bad_utf8(exc: UnicodeDecodeError) -> ParseError:
    return ParseError(data=f"invalid UTF-8 at byte {exc.start} ({exc.reason})")


def _quote(literal: str) -> str:
    """A number literal for a message: long ones are cut (they may be huge)."""
    return literal if len(literal) <= 40 else f"{literal[:20]}...{literal[-10:]} ({len(literal)} chars)"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _checked_float(text: str) -> float:
    """The fallback decoder's float: refuse what would not round-trip."""
    number = float(text)
    if math.isinf(number):
        raise ValueError(f"number {_quote(text)} is infinity when parsed as double")
    # A mantissa of digits, "." and "-" is nonzero if anything is left.
    if number == 0.0 and text.partition("e")[0].partition("E")[0].strip("-0."):
        raise ValueError(f"number {_quote(text)} underflows to 0.0: below the float range")
    return number


def _int_limit_message(message: str) -> str:
    """
    CPython refuses integers past its conversion limit before converting
    (the conversion is the quadratic part) with advice to raise the global
    limit, which is not ours to give: say it in this module's words.
    """
    match = _INT_LIMIT.search(message)
    if match is None:
        return message
    most, digits = match.groups()
    return f"integer of {digits} digits exceeds the {most}-digit limit"


def _check_strings(value: Any) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii() and _SURROGATE.search(item):
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
    integers exact and refusing floats that underflow.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad_utf8(exc) from None
    if data.count(b"[") + data.count(b"{") > max_depth and _deeper_than(data, max_depth):
        raise _too_deep(max_depth)
    # Floats go through a Python check only when a literal could overflow
    # or underflow (a three-digit exponent, or a mantissa of 300+ digits):
    # a Python call per number is the slow part of this decoder.
    risky = _FLOAT_RISK.search(data) is not None or data.translate(_DIGITS_ONLY).find(b"0" * 300) != -1
    limit = sys.getrecursionlimit()
    try:
        # The C scanner recurses once per level; make room for max_depth.
        sys.setrecursionlimit(limit + max_depth + 64)
        value = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_checked_float if risky else float,
        )
    except json.JSONDecodeError as exc:
        where = len(text[: exc.pos].encode("utf-8", "surrogatepass"))
        raise ParseError(data=f"{exc.msg.removesuffix(' at')} at byte {where}") from None
    except ValueError as exc:
        raise ParseError(data=_int_limit_message(str(exc))) from None
    except RecursionError:  # the nesting check above should make this unreachable
        raise _too_deep(max_depth) from None
    finally:
        sys.setrecursionlimit(limit)
    if _SURROGATE_ESCAPE.search(data):
        _check_strings(value)
    return value


def _byte_offset(data: bytes, char_pos: int) -> int:
    """orjson reports positions in characters; say where that is in bytes."""
    if data.isascii():
        return char_pos
    return len(data.decode("utf-8", "replace")[:char_pos].encode("utf-8", "replace"))


def _orjson_error(exc: orjson.JSONDecodeError, data: bytes, max_depth: int) -> ParseError:
    """The L{ParseError} for what orjson refused, in this module's words."""
    if exc.msg.startswith("depth limit") or (
        # orjson's wording for some over-deep input
        exc.msg.startswith("failed to allocate") and _deeper_than(data, max_depth)
    ):
        return _too_deep(min(max_depth, ORJSON_MAX_DEPTH))
    if "UTF-8" in exc.msg:
        # orjson checks the whole input first and blames "surrogates", at 0.
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as bad:
            return _bad_utf8(bad)
    return ParseError(data=f"{exc.msg} at byte {_byte_offset(data, exc.pos)}")


def loads(
    data: bytes, max_depth: int = ORJSON_MAX_DEPTH, check_exact: bool = True, big_ints_checked: bool = True
) -> Any:
    """
    Decode one JSON text, strictly, in time linear in C{len(data)}.

    @param data: the text (surrounding whitespace, C{\\r} included, is fine).
    @param max_depth: deepest nesting accepted, at most 1024.
    @param check_exact: pass L{False} only when L{may_need_exact} was
        already false for bytes that include C{data} (the framer tells).
    @param big_ints_checked: L{False} when that C{may_need_exact} was asked
        without C{big_ints}: then C{data} is still looked at for integers
        past 64 bits.
    @raise ParseError: not strict JSON, nested deeper than C{max_depth}, a
        number that would change (past the float range, an integer past the
        int/str conversion limit); C{data} says what and where.
    """
    if _needs_exact(data) if check_exact else (not big_ints_checked and may_hold_big_int(data)):
        return _loads_exact(data, max_depth)
    try:
        value = _orjson_loads(data)
    except orjson.JSONDecodeError as exc:
        raise _orjson_error(exc, data, max_depth) from None
    if (
        max_depth < ORJSON_MAX_DEPTH
        and data.count(b"[") + data.count(b"{") > max_depth
        and _depth_of(value) > max_depth
    ):
        raise _too_deep(max_depth)
    return value


def shape_decoder(shape: type[S]) -> Callable[[bytes, int, bool], S | None]:
    """
    A decoder of one fixed shape of JSON object, for the hot path: it
    returns the C{shape} (a C{msgspec.Struct}) that C{data} is, or L{None}
    when C{data} is anything else, malformed text included.  Then
    L{loads} decodes it and says what it is.

    It accepts only what L{loads} accepts, with the same values: msgspec
    keeps integers past 64 bits exact (and refuses them past the int/str
    digit limit, leaving them to L{loads}, which says so), parses floats as
    the stdlib does, and refuses infinities; text that may underflow
    (L{may_need_exact}, then the line's own check) or that is checked for
    depth is left to L{loads}.  msgspec validates the shape while it
    parses, without building a dict: that is the gain.  The decoder takes
    the same C{max_depth} and C{check_exact} as L{loads}.
    """
    decode = msgspec.json.Decoder(shape).decode
    errors = (msgspec.DecodeError, RecursionError)

    def decode_shape(data: bytes, max_depth: int, check_exact: bool) -> S | None:
        if (check_exact and _needs_exact(data)) or (
            len(data) > max_depth and data.count(b"[") + data.count(b"{") > max_depth
        ):
            return None
        try:
            return decode(data)
        except errors:
            return None

    return decode_shape


def _has_non_finite(value: Any, rich: bool = False) -> bool:
    """
    Whether a value orjson has just written holds NaN or an infinity
    anywhere orjson looks: containers and their subclasses, dict keys,
    dataclass fields, enum values, and with C{rich}, the JSON forms of the
    rich types (L{_rich}).
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())  # a NaN key is written "null" too
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, enum.Enum):
            stack.append(item.value)
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            stack.extend(_dataclass_members(item).values())
        elif rich and type(item) not in _NO_FLOATS:
            with contextlib.suppress(TypeError):  # orjson wrote it natively
                stack.append(_rich(item))
    return False


def json_form(obj: Any) -> Any:
    """
    The JSON form of a value of a rich type orjson does not write itself:
    a date or time (its C{isoformat()}), a C{NamedTuple} (a list), a
    C{Decimal} (its exact text), a C{timedelta} or msgspec C{Struct} (as
    msgspec writes it), a pydantic model (C{model_dump(mode="json",
    by_alias=True)}).  What it returns may hold more rich values (the
    members of a C{NamedTuple}); L{dumps} writes them all.

    @raise TypeError: C{obj} is of none of these types.
    """
    return _rich(obj)


def _rich(obj: Any) -> Any:
    """
    The JSON form of a rich type orjson does not write itself (the retry's
    C{default}); refuses anything else with orjson's words.
    """
    if isinstance(obj, (datetime.datetime, datetime.date, datetime.time)):
        return obj.isoformat()
    if isinstance(obj, tuple):  # a NamedTuple (orjson writes only plain tuples)
        return list(obj)
    if isinstance(obj, decimal.Decimal):
        return str(obj)  # exact, and what msgspec and pydantic read back
    if isinstance(obj, (msgspec.Struct, datetime.timedelta)):
        # (A Struct's own dicts: msgspec writes their keys, by its rules.)
        return _text_keys(msgspec.to_builtins(obj))
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(obj, pydantic.BaseModel):
        return obj.model_dump(mode="json", by_alias=True)
    raise TypeError(f"Type is not JSON serializable: {type(obj).__name__}")


def _dataclass_members(obj: Any) -> dict[str, Any]:
    """
    A dataclass instance as orjson writes it: the public part of its
    C{__dict__} when it has one, else its public fields.
    """
    attrs = getattr(obj, "__dict__", None)
    if attrs is not None:
        return {k: v for k, v in attrs.items() if not k.startswith("_")}
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if not f.name.startswith("_")}


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
        return _text_keys(_dataclass_members(obj))
    return _rich(obj)


def _key_text(key: Any) -> str:
    """
    The text a dict key is written as: ints and floats as the stdlib json
    module writes them (their C{repr}), C{true}, C{false}, C{null}, dates
    and times in ISO 8601, UUIDs as their string, an enum as its value.

    @raise EncodeError: NaN or an infinity, or a key of another type.
    """
    if isinstance(key, str):
        return str.__str__(key)
    if key is True or key is False or key is None:
        return "true" if key else "false" if key is False else "null"
    if isinstance(key, int):
        return int.__repr__(key)
    if isinstance(key, float):
        if not math.isfinite(key):
            raise EncodeError(_NON_FINITE)
        return float.__repr__(key)
    if isinstance(key, (datetime.datetime, datetime.date, datetime.time)):
        return key.isoformat()
    if isinstance(key, uuid.UUID):
        return str(key)
    if isinstance(key, enum.Enum):
        return _key_text(key.value)
    raise EncodeError(
        "dict keys must be str, int, float, bool, None, a date, a time, a UUID or an enum,"
        f" not {type(key).__name__}"
    )


def _text_keys(value: Any, depth: int = 0) -> Any:
    """
    C{value} with the keys of its dicts (in lists and tuples too) as text
    (L{_key_text}).  Bounded in depth (compiled, deep recursion would
    overflow the C stack rather than raise RecursionError).
    """
    if depth > _TEXT_KEYS_DEPTH and isinstance(value, (dict, list, tuple)):
        raise EncodeError(f"nesting deeper than {ORJSON_MAX_DEPTH}")
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            text = key if type(key) is str else _key_text(key)
            if text in out:
                shown = repr(text) if len(text) <= 40 else repr(text[:40]) + "..."
                raise EncodeError(f"two keys of one object would both be written as {shown}")
            out[text] = _text_keys(item, depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [_text_keys(item, depth + 1) for item in value]
    return value


def _dumps_exact(value: Any, newline: bool) -> bytes:
    limit = sys.getrecursionlimit()
    try:
        # The C encoder recurses once per level; allow what loads allows.
        sys.setrecursionlimit(limit + 2 * ORJSON_MAX_DEPTH + 64)
        # Keys by the one rule, whatever sent the value here (a big
        # integer may come before a dict with a date key).
        keyed = _text_keys(value)
        text = json.dumps(
            keyed, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_like_orjson
        )
    except (TypeError, ValueError) as exc:
        if "Out of range float" in str(exc):
            raise EncodeError(_NON_FINITE) from None
        if "integer string conversion" in str(exc):
            # CPython's wording; its advice (raise the global limit) is not ours.
            most = _int_digit_limit()
            raise EncodeError(f"integer of more than {most} digits exceeds the {most}-digit limit") from None
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


def _for_exact(message: str) -> bool:
    """Whether orjson's refusal (C{message}) is one the exact encoder handles."""
    return "64-bit" in message or "Recursion" in message or message.startswith(_KEY_REFUSED)


def _not_orjson(value: Any, exc: orjson.JSONEncodeError, options: int, newline: bool) -> bytes:
    """
    orjson refused C{value}: integers past 64 bits, nesting past 255
    levels and dict keys that are not strings (written as L{_key_text})
    go to the exact encoder (a value this side accepted is deep at most
    max_depth, so it can always be echoed); a type it does not know is
    tried again with the rich types' JSON forms; anything else is refused.
    """
    message = str(exc)
    if _for_exact(message):
        return _dumps_exact(value, newline)
    if message.startswith("Type is not JSON serializable"):
        return _dumps_rich(value, options, newline)
    raise EncodeError(message) from None


def _dumps_rich(value: Any, options: int, newline: bool) -> bytes:
    """Encode a value holding rich types (L{_rich}), as strictly as the rest."""
    try:
        data = orjson.dumps(value, default=_rich, option=options)
    except orjson.JSONEncodeError as exc:
        message = str(exc)
        if _for_exact(message):
            return _dumps_exact(value, newline)
        if isinstance(exc.__cause__, EncodeError):  # _rich refused a Struct's keys
            raise exc.__cause__ from None
        raise EncodeError(message) from None
    if data.find(b"null") != -1 and _has_non_finite(value, rich=True):
        raise EncodeError(_NON_FINITE)
    return data


def _dumps(value: Any, options: int, newline: bool) -> bytes:
    try:
        data = orjson.dumps(value, option=options)
    except orjson.JSONEncodeError as exc:
        return _not_orjson(value, exc, options, newline)
    # orjson writes NaN and infinities as null; refuse rather than change
    # them.  Output without "null" cannot hold one, so it costs no walk.
    if type(value) not in _NO_FLOATS and data.find(b"null") != -1 and _has_non_finite(value):
        raise EncodeError(_NON_FINITE)
    return data


def dumps(value: Any) -> bytes:
    """
    Encode a value as compact JSON (UTF-8, no spaces, no newline).

    Integers of any size up to the int/str conversion limit are written
    exactly.  Dict keys that are not strings are written as the stdlib
    C{json} module writes them (ints and floats by their C{repr}, C{true},
    C{false}, C{null}), dates and times in ISO 8601, UUIDs as strings and
    enums as their values; a value holding one is written by the exact
    encoder, which is slower.

    @raise EncodeError: the value cannot be written as strict JSON: NaN or
        an infinity anywhere in it, an unsupported type, a dict key of
        another type or two keys of one object written alike (C{1} and
        C{"1"}), an integer past the conversion limit.
    """
    return _dumps(value, _DUMPS_OPTIONS, False)


def dumps_line(value: Any, check: Any = _WHOLE) -> bytes:
    """
    Like L{dumps}, with the terminating C{\\n} appended.  (The body of
    L{_dumps}, for the line options: it runs once per reply.)

    @param check: the part of C{value} that may hold NaN or an infinity,
        when the caller knows the rest holds none (a reply's result, say);
        by default all of C{value} is checked.
    """
    try:
        data = _orjson_dumps(value, option=_LINE_OPTIONS)
    except orjson.JSONEncodeError as exc:
        return _not_orjson(value, exc, _LINE_OPTIONS, True)
    if check is _WHOLE:
        check = value
    if type(check) not in _NO_FLOATS and data.find(b"null") != -1 and _has_non_finite(check):
        raise EncodeError(_NON_FINITE)
    return data


def dumps_member(value: Any) -> bytes | None:
    """
    The bytes L{dumps_line} writes for C{value} as a member of an object
    (at the second level), when orjson writes it as it is: a caller may
    then write the object around it itself.  L{None} when C{value} needs
    more of L{dumps_line}: a type orjson refuses (a rich type, an integer
    past 64 bits, a dict key that is not a str), NaN or an infinity
    (refused), or nesting deep enough that the object around it would
    pass orjson's limit.  Then encode the whole object with
    L{dumps_line}, which handles those.
    """
    try:
        data = _orjson_dumps(value, option=_DUMPS_OPTIONS)
    except orjson.JSONEncodeError:
        return None
    if data.find(b"null") != -1 and _has_non_finite(value):
        return None
    # One level down, a value nested _ORJSON_LEVELS deep would pass the
    # limit: it takes that many brackets, twice over counting the closing ones.
    if len(data) >= 2 * _ORJSON_LEVELS and data.count(b"[") + data.count(b"{") >= _ORJSON_LEVELS:
        return None
    return data
