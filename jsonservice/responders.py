"""
Responders: each handler is wrapped once, at registration
(L{Handler<jsonservice.service.Handler>}), into the callable the
connection core runs for every request to it, which checks the params,
converts them (a typed handler's, see L{jsonservice.typed_responders}),
adds the context and turns a coroutine into a L{Deferred}.

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
    func: Callable[..., Any],
    check: Callable[[Any], None],
    lo: int,
    hi: int,
    convert_list: Callable[[list[Any]], list[Any]] | None = None,
    convert_dict: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> Responder:
    """
    The responder of the common shape: a synchronous handler with no
    context, whose positional params need no more than a count check.

    @param convert_list: converts positional params (a typed handler's;
        L{None}: they pass unchanged).
    @param convert_dict: converts named params, likewise.
    """

    def respond(params: Any, id_: Any, owner: Any) -> Any:
        if type(params) is list and lo <= len(params) <= hi:
            return func(*(params if convert_list is None else convert_list(params)))
        check(params)
        if params is None:
            return func()
        if type(params) is dict:
            return func(**(params if convert_dict is None else convert_dict(params)))
        return func(*(params if convert_list is None else convert_list(params)))

    return respond


def general_responder(
    func: Callable[..., Any],
    check: Callable[[Any], None],
    name: str | None,
    context: bool,
    is_async: bool,
    context_type: Callable[[Any, Any, str | None], Any],
    convert_list: Callable[[list[Any]], list[Any]] | None = None,
    convert_dict: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    finish: Callable[[Any], Any] | None = None,
) -> Responder:
    """
    The responder of any other handler: params checked against its
    signature (and converted, as L{positional_responder}'s), a
    C{context_type(owner, id, name)} first when it takes C{context}, a
    coroutine wrapped into a L{Deferred}.

    @param finish: applied to the result, or added to its Deferred (a
        typed handler's rich results; L{None}: the result as returned).
    """

    def respond_general(params: Any, id_: Any, owner: Any) -> Any:
        check(params)
        args: tuple[Any, ...] = (context_type(owner, id_, name),) if context else ()
        if params is None:
            result = func(*args)
        elif type(params) is dict:
            result = func(*args, **(params if convert_dict is None else convert_dict(params)))
        else:
            result = func(*args, *(params if convert_list is None else convert_list(params)))
        if is_async or type(result) is CoroutineType:
            result = Deferred.fromCoroutine(result)
        if finish is None:
            return result
        if isinstance(result, Deferred):
            return result.addCallback(finish)
        return finish(result)

    return respond_general
