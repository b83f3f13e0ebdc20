"""
An OpenRPC document (U{https://spec.open-rpc.org}) describing a
L{JSONService}'s methods, built from their signatures and docstrings; the
built-in C{rpc.discover} method returns it.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from .service import Handler

__all__ = ["OPENRPC_VERSION", "describe", "schema_for"]

OPENRPC_VERSION: Final = "1.3.2"

_SIMPLE: Final[dict[Any, dict[str, Any]]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    type(None): {"type": "null"},
    None: {"type": "null"},
}


def schema_for(annotation: Any) -> dict[str, Any]:
    """
    A JSON Schema for a Python annotation, as far as it can be told
    (C{{}}, "anything", otherwise).
    """
    if annotation in _SIMPLE:
        return dict(_SIMPLE[annotation])
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return {"oneOf": [schema_for(arg) for arg in args]}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if annotation in (list, tuple) or (isinstance(origin, type) and issubclass(origin, Sequence)):
        if origin is not None and origin not in (str, bytes) and args:
            return {"type": "array", "items": schema_for(args[0])}
        return {"type": "array"}
    if annotation is dict or (isinstance(origin, type) and issubclass(origin, Mapping)):
        if args and len(args) == 2:
            return {"type": "object", "additionalProperties": schema_for(args[1])}
        return {"type": "object"}
    return {}


def _hints(func: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func)
    except Exception:
        pass
    # Some annotation cannot be resolved here: resolve the others one by one.
    hints: dict[str, Any] = {}
    namespace = getattr(func, "__globals__", {})
    for name, annotation in getattr(func, "__annotations__", {}).items():
        try:
            hints[name] = eval(annotation, namespace) if isinstance(annotation, str) else annotation
        except Exception:
            continue  # unknown: described as {} (anything)
    return hints


def _summary(doc: str | None) -> tuple[str, str]:
    text = inspect.cleandoc(doc or "")
    first, _, rest = text.partition("\n\n")
    return " ".join(first.split()), rest.strip()


def describe_method(handler: Handler) -> dict[str, Any]:
    """The OpenRPC Method Object for one handler."""
    hints = _hints(handler.func)
    signature = inspect.signature(handler.func)
    params = list(signature.parameters.values())
    if handler.context:
        params = params[1:]
    described = []
    by_position = False
    for param in params:
        if param.kind is param.VAR_KEYWORD:
            continue
        if param.kind in (param.POSITIONAL_ONLY, param.VAR_POSITIONAL):
            by_position = True
        entry: dict[str, Any] = {
            "name": param.name,
            "schema": schema_for(hints[param.name]) if param.name in hints else {},
        }
        if param.kind is param.VAR_POSITIONAL:
            entry["schema"] = (
                {"type": "array", "items": entry["schema"]} if entry["schema"] else {"type": "array"}
            )
            entry["description"] = "any number of positional values"
        elif param.default is param.empty:
            entry["required"] = True
        described.append(entry)
    summary, description = _summary(handler.func.__doc__)
    method: dict[str, Any] = {
        "name": handler.name,
        "params": described,
        "result": {"name": "result", "schema": schema_for(hints["return"]) if "return" in hints else {}},
        "paramStructure": "by-position" if by_position else "either",
    }
    if summary:
        method["summary"] = summary
    if description:
        method["description"] = description
    return method


def describe(handlers: Mapping[str, Handler], title: str, version: str) -> dict[str, Any]:
    """
    The OpenRPC document for C{handlers} (built-in C{rpc.*} methods left out).
    """
    return {
        "openrpc": OPENRPC_VERSION,
        "info": {"title": title, "version": version},
        "methods": [
            describe_method(handler)
            for name, handler in sorted(handlers.items())
            if not name.startswith("rpc.")
        ],
    }
