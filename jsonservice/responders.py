"""
The responders of handlers without typed params: each handler is wrapped
once, at registration (L{Handler<jsonservice.service.Handler>}), into the
callable the connection core runs for every request to it, which checks
the params, adds the context and turns a coroutine into a L{Deferred}.
Typed handlers get theirs from L{jsonservice.typed_responders}.

Part of the hot path that a compiled build compiles
(L{jsonservice._mypyc.COMPILED_MODULES}).
"""

from __future__ import annotations

from collections.abc import Callable
from types import CoroutineType
from typing import Any

from twisted.internet.defer import Deferred

from .interfaces import Responder

__all__ = ["general_responder", "positional_responder"]


def positional_responder(
    func: Callable[..., Any], check: Callable[[Any], None], lo: int, hi: int
) -> Responder:
    """
    The responder of the common shape: a synchronous handler with no
    context, whose positional params need no more than a count check.
    """

    def respond(params: Any, id_: Any, owner: Any) -> Any:
        if params.__class__ is list and lo <= len(params) <= hi:
            return func(*params)
        check(params)
        if params is None:
            return func()
        return func(**params) if params.__class__ is dict else func(*params)

    return respond


def general_responder(
    func: Callable[..., Any],
    check: Callable[[Any], None],
    name: str | None,
    context: bool,
    is_async: bool,
    context_type: Callable[[Any, Any, str | None], Any],
) -> Responder:
    """
    The responder of any other handler: params checked against its
    signature, a C{context_type(owner, id, name)} first when it takes
    C{context}, a coroutine wrapped into a L{Deferred}.
    """

    def respond_general(params: Any, id_: Any, owner: Any) -> Any:
        check(params)
        args: tuple[Any, ...] = (context_type(owner, id_, name),) if context else ()
        if params is None:
            result = func(*args)
        elif params.__class__ is dict:
            result = func(*args, **params)
        else:
            result = func(*args, *params)
        if is_async or result.__class__ is CoroutineType:
            return Deferred.fromCoroutine(result)
        return result

    return respond_general
