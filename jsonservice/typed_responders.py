"""
Responders of typed handlers: the shapes of
L{Handler._responder<jsonservice.service.Handler._responder>}, with the
params converted (L{ParamConverter<jsonservice.typed.ParamConverter>})
once they are checked, and a result of a rich class turned into its JSON
form at once (L{json_form<jsonservice.codec.json_form>}).

A handler with neither gets the untyped responder, unchanged: its calls
pay nothing for typed handlers existing.
"""

from __future__ import annotations

import datetime
import decimal
import types
import typing
from typing import TYPE_CHECKING, Any, Final

import msgspec

from .codec import json_form
from .interfaces import Responder
from .responders import general_responder, positional_responder
from .typed import is_pydantic_model

if TYPE_CHECKING:
    from .service import Handler
    from .typed import ParamConverter

__all__ = ["rich_result_classes", "typed_responder"]

#: Classes orjson does not write itself, whose values a responder turns into
#: their JSON form at once (L{rich_result_classes}) rather than leave them
#: to the encoder's slower retry (an exception, then a second encoding).
_RICH_BASES: Final[tuple[type, ...]] = (
    msgspec.Struct,
    datetime.datetime,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    decimal.Decimal,
)
#: Annotations whose argument is what a handler's result resolves to.
_WRAPPERS: Final = frozenset({"Deferred", "Awaitable", "Coroutine"})


def _is_rich(cls: type) -> bool:
    named_tuple = issubclass(cls, tuple) and hasattr(cls, "_fields")
    return issubclass(cls, _RICH_BASES) or is_pydantic_model(cls) or named_tuple


def rich_result_classes(annotation: Any) -> frozenset[type]:
    """
    The classes named by a return annotation (itself, the members of a
    union, what a C{Deferred[...]} or C{Awaitable[...]} resolves to) whose
    values orjson does not write itself: msgspec C{Struct}s, pydantic
    models, dates and times, C{timedelta}, C{Decimal}, C{NamedTuple}s.
    Only a result of exactly one of these classes is turned into its JSON
    form by the responder; anything else is left to the encoder, which
    writes the same thing.
    """
    found: set[type] = set()
    stack = [annotation]
    while stack:
        item = stack.pop()
        origin = typing.get_origin(item)
        if origin in (typing.Union, types.UnionType) or getattr(origin, "__name__", None) in _WRAPPERS:
            stack.extend(typing.get_args(item))
        elif isinstance(item, type) and origin is None and _is_rich(item):
            found.add(item)
    return frozenset(found)


def typed_responder(
    handler: Handler, converter: ParamConverter | None, rich: frozenset[type], context_type: Any
) -> Responder:
    """
    The responder of a typed handler.

    @param converter: converts its params (L{None}: they pass unchanged).
    @param rich: the classes of results to turn into their JSON form here
        (see L{rich_result_classes}).
    @param context_type: L{CallContext<jsonservice.service.CallContext>}.
    """
    convert_list = converter.convert_list if converter is not None else None
    convert_dict = converter.convert_dict if converter is not None else None
    if handler.fast and not handler.is_async and not rich:
        lo, hi = handler.min_positional, handler.max_positional
        return positional_responder(handler.func, handler.check, lo, hi, convert_list, convert_dict)

    def finish(result: Any) -> Any:
        # The result's JSON form now, or the encoder's retry does it later.
        return json_form(result) if result.__class__ in rich else result

    return general_responder(
        handler.func,
        handler.check,
        handler.name,
        handler.context,
        handler.is_async,
        context_type,
        convert_list,
        convert_dict,
        finish if rich else None,
    )
