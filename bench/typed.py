"""
``python -m bench.typed``: what typed handlers cost, and why msgspec.

Two measurements, in one process and without sockets (medians of several
alternating rounds, so the figures of one table share the machine's load):

1. **Libraries**: converting one JSON value to an annotated type, for the
   conversion layer's candidates:

   - ``msgspec (compiled)``: ``jsonservice.typed.Conversion``, msgspec's
     ``convert`` into a one-field array-like Struct built once per type
     (what the server runs);
   - ``msgspec.convert(v, T)``: the same call on the bare annotation, which
     msgspec reads again on every call;
   - ``pydantic TypeAdapter``: ``TypeAdapter(T).validate_python(v)``, built
     once per type (lax mode, pydantic's default; strict mode is no faster).

2. **Echo**: ns per request for a read of 100 pipelined ``echo`` requests
   fed to ``JSONProtocol.dataReceived`` (as ``bench.micro`` does), for an
   unannotated ``echo(value)``, an annotated ``echo(value: str) -> str``,
   and an annotated handler taking a dataclass.  With ``--before DIR``
   (a copy of an older ``jsonservice`` package renamed ``jsonservice_base``
   in DIR, e.g. from ``git archive``), that version's unannotated echo is
   measured in the same rounds.

This is a measurement, not a test.  ``callgrind`` instruction counts of the
same loops (``--loop NAME --reads N``, run under ``valgrind --tool=callgrind``)
are independent of the machine's load.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import importlib
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import msgspec

from jsonservice.typed import conversion_for

ROUNDS = 7
N = 100


@dataclasses.dataclass
class User:
    """A dataclass parameter."""

    name: str
    age: int
    tags: list[str]


class UserStruct(msgspec.Struct):
    """The same as a Struct."""

    name: str
    age: int
    tags: list[str]


def _ns(run: Callable[[], Any], number: int) -> float:
    started = time.perf_counter()
    for _ in range(number):
        run()
    return (time.perf_counter() - started) / number * 1e9


USER = {"name": "a", "age": 3, "tags": ["x", "y"]}
CASES: list[tuple[str, Any, Any]] = [
    ("str", str, "hello"),
    ("int", int, 42),
    ("list[int] of 10", list[int], list(range(10))),
    ("dict[str, list[tuple[int, str]]] | None", dict[str, list[tuple[int, str]]] | None, {"a": [[1, "x"]]}),
    ("datetime", datetime.datetime, "2024-05-01T12:00:00+00:00"),
    ("dataclass", User, USER),
    ("Struct / BaseModel", UserStruct, USER),
]


def candidates(annotation: Any, value: Any, pydantic_too: bool = True) -> dict[str, Callable[[], Any]]:
    """The ways to convert C{value} to C{annotation}, each built once."""
    pydantic: Any = None
    if pydantic_too:
        with contextlib.suppress(ImportError):
            import pydantic
    compiled = conversion_for(annotation)
    found: dict[str, Callable[[], Any]] = {
        "msgspec (compiled)": lambda c=compiled, v=value: c.convert(v),  # type: ignore[misc]
        "msgspec.convert(v, T)": lambda t=annotation, v=value: msgspec.convert(v, t),  # type: ignore[misc]
    }
    if pydantic is not None:
        target = annotation
        if annotation is UserStruct:

            class UserModel(pydantic.BaseModel):
                name: str
                age: int
                tags: list[str]

            target = UserModel
        adapter = pydantic.TypeAdapter(target)
        found["pydantic TypeAdapter"] = lambda a=adapter, v=value: a.validate_python(v)  # type: ignore[misc]
    return found


def measure_libraries(number: int = 20_000) -> dict[str, dict[str, float]]:
    """ns per conversion, by case and candidate."""
    figures: dict[str, dict[str, float]] = {}
    for label, annotation, value in CASES:
        runs = candidates(annotation, value)
        rounds: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(ROUNDS):  # alternating, so that all share the machine's load
            for name, run in runs.items():
                rounds[name].append(_ns(run, number))
        figures[label] = {name: statistics.median(values) for name, values in rounds.items()}
    return figures


def _chunk(start: int) -> bytes:
    return b"".join(
        b'{"jsonrpc":"2.0","method":"echo","params":["hello world"],"id":%d}\n' % (start + i)
        for i in range(N)
    )


def _user_chunk(start: int) -> bytes:
    return b"".join(
        b'{"jsonrpc":"2.0","method":"echo","params":[{"name":"a","age":3,"tags":["x"]}],"id":%d}\n'
        % (start + i)
        for i in range(N)
    )


def _protocol(package: str, handler: Callable[..., Any]) -> Any:
    service_module = importlib.import_module(f"{package}.service")
    protocol_module = importlib.import_module(f"{package}.protocol")
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport

    class Discard(StringTransport):
        def write(self, data: bytes) -> None:
            pass

    service = service_module.JSONService()
    service.add_method("echo", handler)
    proto = protocol_module.JSONProtocol(service, None, Clock())
    proto.makeConnection(Discard())
    return proto


def echo_untyped(value):  # type: ignore[no-untyped-def]
    """The demo service's echo."""
    return value


def echo_str(value: str) -> str:
    """An annotated echo."""
    return value


def echo_user(value: User) -> User:
    """An echo of a dataclass, converted and encoded."""
    return value


def loops(before: bool) -> dict[str, Callable[[], None]]:
    """One read of 100 pipelined requests into each protocol."""
    chunk, user_chunk = _chunk(1_000_000), _user_chunk(1_000_000)
    found: dict[str, Callable[[], None]] = {}
    if before:
        old = _protocol("jsonservice_base", echo_untyped)
        found["before: echo(value)"] = lambda: old.dataReceived(chunk)
    untyped = _protocol("jsonservice", echo_untyped)
    typed = _protocol("jsonservice", echo_str)
    typed_user = _protocol("jsonservice", echo_user)
    untyped_user = _protocol("jsonservice", echo_untyped)
    found["echo(value)"] = lambda: untyped.dataReceived(chunk)
    found["echo(value: str) -> str"] = lambda: typed.dataReceived(chunk)
    found["echo(value) of an object"] = lambda: untyped_user.dataReceived(user_chunk)
    found["echo(value: User) -> User"] = lambda: typed_user.dataReceived(user_chunk)
    return found


def measure_echo(before: bool, reads: int = 300) -> dict[str, float]:
    """ns per request, each loop measured in alternating rounds."""
    found = loops(before)
    rounds: dict[str, list[float]] = {name: [] for name in found}
    for _ in range(ROUNDS):
        for name, run in found.items():
            started = time.perf_counter()
            for _ in range(reads):
                run()
            rounds[name].append((time.perf_counter() - started) / (reads * N) * 1e9)
    return {name: statistics.median(values) for name, values in rounds.items()}


def main(argv: list[str] | None = None) -> int:
    """Print both tables (or run one loop, for callgrind)."""
    parser = argparse.ArgumentParser(prog="python -m bench.typed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", metavar="DIR", help="a directory holding jsonservice_base, an older copy")
    parser.add_argument("--loop", help="run only this echo loop (for callgrind), --reads times")
    parser.add_argument("--reads", type=int, default=200)
    parser.add_argument(
        "--convert", nargs=2, metavar=("CASE", "CANDIDATE"), help="run only this conversion, --reads times"
    )
    parser.add_argument("--skip-libraries", action="store_true")
    args = parser.parse_args(argv)
    if args.before:
        sys.path.insert(0, args.before)
    if args.convert:
        case, candidate = args.convert
        [(annotation, value)] = [(a, v) for label, a, v in CASES if label == case]
        convert = candidates(annotation, value, "pydantic" in candidate)[candidate]
        for _ in range(args.reads):
            convert()
        return 0
    if args.loop:
        run = loops(bool(args.before))[args.loop]
        for _ in range(args.reads):
            run()
        return 0
    if not args.skip_libraries:
        figures = measure_libraries()
        names = sorted({name for row in figures.values() for name in row})
        print("| converting to | " + " | ".join(names) + " |")
        print("| --- |" + " ---: |" * len(names))
        for label, row in figures.items():
            cells = [f"{row[name]:,.0f} ns" if name in row else "—" for name in names]
            print(f"| {label} | " + " | ".join(cells) + " |")
        print()
    echo = measure_echo(bool(args.before))
    base = echo["echo(value)"]
    print("| handler | ns / request | ratio to unannotated |")
    print("| --- | ---: | ---: |")
    for name, ns in echo.items():
        print(f"| `{name}` | {ns:,.0f} | {ns / base:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
