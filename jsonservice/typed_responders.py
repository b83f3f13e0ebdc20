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
from collections.abc import Callable
from types import CoroutineType
from typing import TYPE_CHECKING, Any, Final

import msgspec
from twisted.internet.defer import Deferred

from .codec import json_form
from .interfaces import Responder
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


def _unchanged(params: Any) -> Any:
    return params


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
    func, check, name = handler.func, handler.check, handler.name
    lo, hi = handler.min_positional, handler.max_positional
    is_async = handler.is_async
    convert_list: Callable[[Any], Any] = converter.convert_list if converter is not None else _unchanged
    convert_dict: Callable[[Any], Any] = converter.convert_dict if converter is not None else _unchanged

    def finish(result: Any) -> Any:
        # The result's JSON form now, or the encoder's retry does it later.
        return json_form(result) if result.__class__ in rich else result

    if handler.fast and not is_async and not rich:

        def respond_typed(params: Any, id_: Any, owner: Any) -> Any:
            if params.__class__ is list and lo <= len(params) <= hi:
                return func(*convert_list(params))
            check(params)
            if params is None:
                return func()
            return func(**convert_dict(params)) if params.__class__ is dict else func(*convert_list(params))

        return respond_typed

    context = handler.context

    def respond_typed_general(params: Any, id_: Any, owner: Any) -> Any:
        check(params)
        args: tuple[Any, ...] = (context_type(owner, id_, name),) if context else ()
        if params is None:
            result = func(*args)
        elif params.__class__ is dict:
            result = func(*args, **convert_dict(params))
        else:
            result = func(*args, *convert_list(params))
        if is_async or result.__class__ is CoroutineType:
            result = Deferred.fromCoroutine(result)
        if not rich:
            return result
        if isinstance(result, Deferred):
            return result.addCallback(finish)
        return finish(result)

    return respond_typed_general
