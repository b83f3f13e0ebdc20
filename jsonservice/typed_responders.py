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

from collections.abc import Callable
from types import CoroutineType
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred

from .codec import json_form
from .interfaces import Responder

if TYPE_CHECKING:
    from .service import Handler
    from .typed import ParamConverter

__all__ = ["typed_responder"]


def _unchanged(params: Any) -> Any:
    return params


def typed_responder(
    handler: Handler, converter: ParamConverter | None, rich: frozenset[type], context_type: Any
) -> Responder:
    """
    The responder of a typed handler.

    @param converter: converts its params (L{None}: they pass unchanged).
    @param rich: the classes of results to turn into their JSON form here
        (see L{rich_result_classes<jsonservice.typed.rich_result_classes>}).
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
