"""
Typed handlers: a handler's annotations validate and convert its params
before it runs, and describe them in C{rpc.discover}.

Conversion is msgspec's (C{msgspec.convert}, strict: a JSON value is never
coerced from another JSON type, a string is never read as a number).  Each
annotation is compiled once, when the handler is registered, into a
L{Conversion}.  msgspec keeps what it learns of a class (a dataclass, a
C{Struct}, a C{TypedDict}...) on the class, so a class annotation is
converted by msgspec directly; any other annotation (C{list[int]}, a
union, a C{Literal}) msgspec would read again on every call, so it is
wrapped in a one-field array-like C{Struct} built once, which then holds
it (measured with callgrind: converting a small value to C{dict[str,
list[tuple[int, str]]] | None} takes 22,700 instructions bare, 8,200
wrapped; a dataclass, 7,200 bare, 9,900 wrapped).  Values whose class
already is the annotation (a C{str} for C{str}, an C{int} for C{int}) are
taken as they are, without calling msgspec: that keeps handlers with
scalar params within a few percent of unannotated ones.

What converts: everything msgspec does from JSON values (builtins and
containers, C{Optional} and unions, C{Literal}, enums, C{datetime},
C{date}, C{time}, C{timedelta}, C{UUID}, C{Decimal}, dataclasses,
C{TypedDict}, C{NamedTuple}, msgspec C{Struct}s, C{Annotated} constraints
with C{msgspec.Meta}), and pydantic models, through their own
C{model_validate}, when pydantic is installed.  A parameter that is not
annotated, is C{Any} or C{object}, or whose annotation has no JSON form (an
arbitrary class, a callable, a forward reference that cannot be resolved)
is passed through unchanged, as before typed handlers existed (the service
logs the last kind once, at registration: see L{ParamConverter.unchecked}).

This module imports nothing from Twisted.

A value that does not convert is L{InvalidParams} (-32602) naming the JSON
path of the first wrong value within the params (C{$.user.name} for named
params, C{$[0].name} for positional ones) and what was wrong with it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import re
import sys
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import msgspec

from .errors import InvalidParams

__all__ = [
    "Conversion",
    "ConversionError",
    "ParamConverter",
    "conversion_for",
    "has_json_form",
    "is_pydantic_model",
    "resolve_hints",
]

#: Annotations that mean "anything": the value passes unchanged.
_ANYTHING: Final[tuple[Any, ...]] = (Any, object, inspect.Parameter.empty)
#: Scalar types a JSON value already has when it is right.  The test is the
#: exact class, so C{True} is not taken for an C{int} (msgspec refuses it
#: too, as JSON Schema does).
_SCALARS: Final = (str, int, float, bool)
#: Longest path or reason quoted in an error: both may echo peer data.
_QUOTE_MAX: Final = 200
#: msgspec's words: "Expected `int`, got `str` - at `$[0].a`", or for a
#: mapping key "... - at `key` in `$[0]`".
_MSGSPEC_ERROR: Final = re.compile(
    r"^(?P<reason>.*?)(?: - at (?P<key>`key` in )?`(?P<path>\$[^`]*)`)?$", re.S
)
_BACKTICKED: Final = re.compile(r"`([^`]*)`")


class ConversionError(ValueError):
    """
    A value did not convert to the type asked for.

    A handler's params that do not convert are answered -32602 (the
    server raises L{InvalidParams} with this error's C{path} and
    C{reason} in C{data}); a client's C{call(..., result_type=T)} fails
    with this error when the result does not convert to C{T}.

    @ivar path: the JSON path of the first wrong value (C{$} is the whole
        value converted: the params, or the result).
    @ivar reason: what was wrong with it, e.g. C{"expected str, got int"}.
    @ivar method: the method called, when known.
    """

    def __init__(self, path: str, reason: str, method: str | None = None) -> None:
        super().__init__(path, reason, method)
        self.path = path
        self.reason = reason
        self.method = method

    def __str__(self) -> str:
        where = f"{self.method} result " if self.method is not None else ""
        return f"{where}{self.path}: {self.reason}"

    def as_invalid_params(self) -> InvalidParams:
        """The -32602 error a server answers for params that did not convert."""
        return InvalidParams(
            data={"message": f"{self.path}: {self.reason}", "path": self.path, "reason": self.reason}
        )


def is_pydantic_model(annotation: Any) -> bool:
    """Whether C{annotation} is a pydantic model class (L{False} when pydantic is not imported)."""
    pydantic = sys.modules.get("pydantic")
    return (
        pydantic is not None
        and isinstance(annotation, type)
        and issubclass(annotation, getattr(pydantic, "BaseModel", ()))
    )


def _dec_hook(annotation: Any, value: Any) -> Any:
    """msgspec's hook for types it does not know: pydantic models validate themselves."""
    if is_pydantic_model(annotation):
        # pydantic's ValidationError is a ValueError: msgspec reports it
        # with the path so far and keeps it as the cause (for its own path).
        return annotation.model_validate(value)
    raise TypeError(f"no conversion to {annotation!r}")


def _probe_schema_hook(annotation: Any) -> dict[str, Any]:
    if is_pydantic_model(annotation):
        return {"type": "object"}  # (not {}: msgspec takes an empty schema for no schema)
    raise TypeError(f"{annotation!r} has no JSON form")


def has_json_form(annotation: Any) -> bool:
    """
    Whether values of C{annotation} can be converted from JSON (and
    described by a JSON Schema): msgspec supports it, or it is a pydantic
    model, and every type inside it too.
    """
    try:
        msgspec.json.schema_components((annotation,), schema_hook=_probe_schema_hook)
    except Exception:
        # TypeError for unsupported types; a type whose own annotations
        # cannot be resolved raises whatever resolving them raised.
        return False
    return True


def _mentions_pydantic(annotation: Any) -> bool:
    """Whether a pydantic model appears anywhere in C{annotation} (so msgspec needs the hook)."""
    if "pydantic" not in sys.modules:
        return False
    found = False

    def hook(inner: Any) -> dict[str, Any]:
        nonlocal found
        found = found or is_pydantic_model(inner)
        return {"type": "object"}

    try:
        msgspec.json.schema_components((annotation,), schema_hook=hook)
    except Exception:
        return False
    return found


def _render(reason: str) -> str:
    """msgspec's sentence in this module's style: "expected str, got int"."""
    if reason.startswith("Expected `"):
        reason = _BACKTICKED.sub(r"\1", reason)
    else:
        reason = _BACKTICKED.sub(r"'\1'", reason)
    if reason[:1].isupper() and reason[1:2].islower():
        reason = reason[0].lower() + reason[1:]
    return _cut(reason)


def _cut(text: str) -> str:
    return text if len(text) <= _QUOTE_MAX else text[: _QUOTE_MAX - 3] + "..."


def _member(path: str, key: Any) -> str:
    """The path of member C{key} (a name or an index) of the value at C{path}."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    key = str(key)
    return f"{path}.{key}" if key.isidentifier() else f"{path}[{json.dumps(key)}]"


def _error(exc: msgspec.ValidationError, prefix: str, path: str) -> ConversionError:
    """
    A L{ConversionError} from msgspec's: its path, which starts with
    C{prefix} (C{$}, or the wrapper's one field, C{$[0]}), is put under
    C{path}.
    """
    match = _MSGSPEC_ERROR.match(str(exc))
    assert match is not None  # the pattern matches any text
    inner = match["path"] or prefix
    where = path + inner[len(prefix) :] if inner.startswith(prefix) else path
    reason = match["reason"]
    cause = exc.__cause__
    errors = getattr(cause, "errors", None)
    if callable(errors):
        # A pydantic model refused its part: its first error has a location
        # within the model and a message of its own.
        try:
            first = errors(include_url=False)[0]
            for key in first.get("loc", ()):
                where = _member(where, key)
            reason = str(first.get("msg", reason))
        except Exception:
            reason = reason.split("\n", 1)[0]
    else:
        reason = _render(reason)
        if match["key"]:
            reason += " (in an object key)"
    return ConversionError(_cut(where), _cut(reason))


class Conversion:
    """
    One annotation compiled for conversion from JSON values (see the
    module docstring).  Build one with L{conversion_for}, which caches.

    @ivar annotation: the type values are converted to.
    """

    __slots__ = ("_exact", "_hook", "_prefix", "_struct", "annotation")

    def __init__(self, annotation: Any) -> None:
        """
        @raise TypeError: values of C{annotation} have no JSON form (see
            L{has_json_form}).
        """
        if not has_json_form(annotation):
            raise TypeError(f"{annotation!r} cannot be converted from JSON")
        self.annotation = annotation
        # A value that already has exactly the annotation's class is taken
        # as it is: a JSON scalar of the right type, or (from Python callers
        # of dispatch) an instance of the very class asked for.
        self._exact: type | None = annotation if isinstance(annotation, type) else None
        self._hook = _dec_hook if _mentions_pydantic(annotation) else None
        # A class keeps msgspec's information itself; anything else goes in
        # a struct class that keeps it (see the module docstring).
        self._struct: Any = None
        self._prefix = "$"
        if typing.get_origin(annotation) is not None or not isinstance(annotation, type):
            self._struct = msgspec.defstruct(
                "Value", [("value", annotation)], array_like=True, module=__name__
            )
            self._prefix = "$[0]"
        # Compile now: msgspec builds the type information on first use.
        with contextlib.suppress(ConversionError):
            self.convert(None)

    def convert(self, value: Any, path: str = "$") -> Any:
        """
        Return C{value} (a JSON value) converted to the annotation.

        @param path: the JSON path of C{value}, for errors.
        @raise ConversionError: it does not convert; the error names the
            path of the first wrong value inside it.
        """
        if value.__class__ is self._exact:
            return value
        try:
            # (No dec_hook keyword unless needed: msgspec's keyword parsing
            # alone costs about as much as converting a datetime.)
            struct, hook = self._struct, self._hook
            if struct is None:
                if hook is None:
                    return msgspec.convert(value, self.annotation)
                return msgspec.convert(value, self.annotation, dec_hook=hook)
            if hook is None:
                return msgspec.convert([value], struct).value
            return msgspec.convert([value], struct, dec_hook=hook).value
        except msgspec.ValidationError as exc:
            raise _error(exc, self._prefix, path) from None
        except RecursionError:
            # A recursive type and deeply nested input: msgspec recurses in C.
            raise ConversionError(path, "nested too deeply to convert") from None

    def convert_result(self, value: Any, method: str | None = None) -> Any:
        """
        Like L{convert}, for the result of a call to C{method}.

        @raise ConversionError: it does not convert; the error names the
            method and the path within the result.
        """
        try:
            return self.convert(value)
        except ConversionError as exc:
            raise ConversionError(exc.path, exc.reason, method) from None

    def __repr__(self) -> str:
        return f"<Conversion to {self.annotation!r}>"


_cache: dict[Any, Conversion] = {}


def conversion_for(annotation: Any) -> Conversion:
    """
    The L{Conversion} to C{annotation}, compiled once per annotation.

    @raise TypeError: values of C{annotation} have no JSON form.
    """
    try:
        found = _cache.get(annotation)
    except TypeError:  # an unhashable annotation (rare): compiled each time
        return Conversion(annotation)
    if found is None:
        found = _cache[annotation] = Conversion(annotation)
    return found


def resolve_hints(func: Callable[..., Any]) -> dict[str, Any]:
    """
    The resolved annotations of C{func} (of its C{__call__} for other
    callables), string annotations evaluated in its module.  An annotation
    that cannot be resolved is left out, the others kept.
    """
    target: Any = func
    if not (inspect.isfunction(func) or inspect.ismethod(func)):
        call = inspect.getattr_static(type(func), "__call__", None)
        if inspect.isfunction(call):
            target = call  # its annotations, "self" unannotated
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception:
        pass
    # One annotation cannot be resolved here: resolve the others one by one.
    hints: dict[str, Any] = {}
    namespace = getattr(inspect.unwrap(target), "__globals__", {})
    for name, annotation in getattr(target, "__annotations__", {}).items():
        try:
            hints[name] = eval(annotation, namespace) if isinstance(annotation, str) else annotation
        except Exception:
            continue  # unknown: passed through, described as {} (anything)
    return hints


@dataclasses.dataclass(frozen=True)
class _Plan:
    """Where each parameter's conversion applies."""

    positional: tuple[Conversion | None, ...]
    var_positional: Conversion | None
    named: dict[str, Conversion | None]
    var_keyword: Conversion | None


class ParamConverter:
    """
    A handler's params, validated and converted as its annotations say:
    built once per handler, at registration.

    @ivar active: whether any parameter is converted at all (when not, the
        handler is called as if it had no annotations).
    @ivar unchecked: the parameters whose annotation has no JSON form, by
        name: their values are passed through unchecked.
    """

    def __init__(self, params: Sequence[inspect.Parameter], hints: Mapping[str, Any]) -> None:
        """
        @param params: the parameters params bind to (a context one left out).
        @param hints: their resolved annotations (L{resolve_hints}).
        """
        kinds = inspect.Parameter
        self.unchecked: dict[str, Any] = {}
        by_name = {p.name: self._conversion(p.name, hints) for p in params}
        positional = tuple(
            by_name[p.name] for p in params if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)
        )
        var_positional = next((by_name[p.name] for p in params if p.kind is kinds.VAR_POSITIONAL), None)
        named = {
            p.name: by_name[p.name]
            for p in params
            if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)
        }
        var_keyword = next((by_name[p.name] for p in params if p.kind is kinds.VAR_KEYWORD), None)
        self._plan = _Plan(positional, var_positional, named, var_keyword)
        self.active = any(positional) or any(named.values()) or bool(var_positional or var_keyword)
        self._paths = tuple(f"$[{index}]" for index in range(len(positional)))
        self.convert_list: Callable[[list[Any]], list[Any]] = self._list_converter(params)

    def _conversion(self, name: str, hints: Mapping[str, Any]) -> Conversion | None:
        """The conversion of one parameter, or L{None} to pass its values through."""
        annotation = hints.get(name, inspect.Parameter.empty)
        if any(annotation is anything for anything in _ANYTHING):
            return None
        try:
            return conversion_for(annotation)
        except TypeError:
            self.unchecked[name] = annotation
            return None

    def _list_converter(self, params: Sequence[inspect.Parameter]) -> Callable[[list[Any]], list[Any]]:
        """
        The function converting positional params.  When every positional
        parameter is a scalar (C{str}, C{int}, C{float}, C{bool}) and there
        are no extra ones to convert, it only compares classes, and hands
        the params on unchanged when they all match: the common case costs
        a class comparison per value.
        """
        plan = self._plan
        exact = tuple(getattr(c, "_exact", None) for c in plan.positional)
        slow = self._convert_list
        if plan.var_positional is not None or not exact or not all(c in _SCALARS for c in exact):
            return slow
        required = [p for p in params if p.default is p.empty and p.kind is not p.VAR_POSITIONAL]
        if len(exact) == 1 and len(required) == 1:
            # (The responder has checked the count: exactly one value.)
            (only,) = exact

            def convert_one(values: list[Any]) -> list[Any]:
                return values if values[0].__class__ is only else slow(values)

            return convert_one

        def convert_scalars(values: list[Any]) -> list[Any]:
            for value, cls in zip(values, exact, strict=False):
                if value.__class__ is not cls:
                    return slow(values)
            return values

        return convert_scalars

    def _convert_list(self, values: list[Any]) -> list[Any]:
        plan = self._plan
        positional, paths, extra = plan.positional, self._paths, plan.var_positional
        count = len(positional)
        out = list(values)
        try:
            for index, value in enumerate(values):
                conversion = positional[index] if index < count else extra
                if conversion is not None:
                    path = paths[index] if index < count else f"$[{index}]"
                    out[index] = conversion.convert(value, path)
        except ConversionError as exc:
            raise exc.as_invalid_params() from None
        return out

    def convert_dict(self, values: dict[str, Any]) -> dict[str, Any]:
        """
        Named params, converted (a new dict).

        @raise InvalidParams: a value does not convert.
        """
        plan = self._plan
        named, extra = plan.named, plan.var_keyword
        out = dict(values)
        try:
            for key, value in values.items():
                conversion = named.get(key, extra)
                if conversion is not None:
                    out[key] = conversion.convert(value, _member("$", key))
        except ConversionError as exc:
            raise exc.as_invalid_params() from None
        return out

    def convert(self, params: list[Any] | dict[str, Any] | None) -> list[Any] | dict[str, Any] | None:
        """
        Params (already checked against the signature), converted.

        @raise InvalidParams: a value does not convert; C{data} has the
            C{path} of the first wrong value, the C{reason}, and both in
            one C{message}.
        """
        if params is None:
            return None
        if params.__class__ is dict:
            return self.convert_dict(params)
        return self.convert_list(params)  # type: ignore[arg-type]
