"""
C{rpc.discover} of typed handlers: a JSON Schema for every annotated param
and result, named types under C{components/schemas}, and a document that
validates against the OpenRPC meta-schema (vendored in C{tests/schemas},
see its README), checked with jsonschema offline.
"""

from __future__ import annotations

import datetime
import decimal
import json
import uuid
from pathlib import Path
from typing import Any, Generic, TypeVar

import msgspec
import pytest

from jsonservice import CallContext, JSONService
from jsonservice.testing import connected_pair

from . import typed_types
from .typed_types import Address, Color, Item, Kind, Level, Pair, Point, Tree, User

jsonschema = pytest.importorskip("jsonschema")
referencing = pytest.importorskip("referencing")

SCHEMAS = Path(__file__).parent / "schemas"
Profile = getattr(typed_types, "Profile", None)
T = TypeVar("T")


class Box(msgspec.Struct, Generic[T]):
    """A generic Struct."""

    item: T


def _load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    return loaded


def openrpc_validator() -> Any:
    """A validator of OpenRPC documents, its JSON Schema meta-schema resolved locally."""
    from referencing.jsonschema import DRAFT7

    meta = DRAFT7.create_resource(_load("json-schema-tools-meta-schema-1.8.0.json"))
    registry = referencing.Registry().with_resources(
        [("https://meta.json-schema.tools", meta), ("https://meta.json-schema.tools/", meta)]
    )
    return jsonschema.Draft7Validator(_load("openrpc-meta-schema-1.14.9.json"), registry=registry)


def rich_service() -> JSONService:
    service = JSONService(title="Typed", version="2.0")

    @service.method
    def create_user(user: User, tags: list[str], color: Color = Color.RED) -> User:
        """Create a user."""
        return user

    @service.method
    def shapes(point: Point, pair: Pair, kind: Kind, level: Level | None = None) -> tuple[int, str]:
        return (1, "a")

    @service.method
    def times(
        when: datetime.datetime, day: datetime.date, at: datetime.time, span: datetime.timedelta
    ) -> str:
        return ""

    @service.method
    def ids(key: uuid.UUID, amount: decimal.Decimal, *more: decimal.Decimal) -> dict[str, decimal.Decimal]:
        return {}

    @service.method
    def structs(item: Item, tree: Tree, box: Box[int]) -> list[Item]:
        return []

    @service.method(context=True)
    def whoami(ctx: CallContext, name: str, **extra: int) -> str:
        return name

    @service.method
    def loose(a, b: Any, c: object):  # type: ignore[no-untyped-def]
        return a

    if Profile is not None:

        @service.method
        def profile(profile: Profile, address: Address) -> Profile:  # type: ignore[valid-type]
            return profile

    return service


def test_discover_validates_against_the_openrpc_meta_schema() -> None:
    doc = rich_service().discover()
    openrpc_validator().validate(doc)
    # and every schema in it is a valid JSON Schema (draft 7) on its own
    for method in doc["methods"]:
        for entry in [*method["params"], method["result"]]:
            jsonschema.Draft7Validator.check_schema(entry["schema"])
    for schema in doc["components"]["schemas"].values():
        jsonschema.Draft7Validator.check_schema(schema)


def test_the_validator_would_catch_a_broken_document() -> None:
    validator = openrpc_validator()
    doc = rich_service().discover()
    broken = json.loads(json.dumps(doc))
    broken["methods"][0]["params"][0]["schema"] = {"type": 5}
    assert not validator.is_valid(broken)
    del doc["info"]
    assert not validator.is_valid(doc)


def test_discover_over_the_wire_is_the_same_document() -> None:
    service = rich_service()
    pair = connected_pair(service)
    assert pair.result_of(pair.client.call("rpc.discover")) == json.loads(json.dumps(service.discover()))


def by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {method["name"]: method for method in doc["methods"]}


def test_named_types_are_components_referred_to_with_ref() -> None:
    doc = rich_service().discover()
    components = doc["components"]["schemas"]
    assert {"User", "Address", "Color", "Level", "Point", "Pair", "Item", "Tree", "Box_int_"} <= set(
        components
    )
    create_user = by_name(doc)["create_user"]
    assert create_user["params"][0] == {
        "name": "user",
        "schema": {"$ref": "#/components/schemas/User"},
        "required": True,
    }
    assert create_user["result"]["schema"] == {"$ref": "#/components/schemas/User"}
    assert components["User"]["properties"]["address"] == {"$ref": "#/components/schemas/Address"}
    assert components["User"]["properties"]["born"] == {"type": "string", "format": "date"}
    assert components["Tree"]["properties"]["children"]["items"] == {"$ref": "#/components/schemas/Tree"}
    # every $ref points at a component
    refs = json.dumps(doc).split('"$ref": "')[1:]
    assert len(refs) > 10
    for ref in refs:
        name = ref.split('"', 1)[0].removeprefix("#/components/schemas/")
        assert name in components, name


def test_scalars_and_containers_are_described_inline() -> None:
    methods = by_name(rich_service().discover())
    times = {p["name"]: p["schema"] for p in methods["times"]["params"]}
    assert times == {
        # (RFC 3339's date-time and time formats need an offset, which a
        # naive or aware datetime may or may not have: msgspec adds none.)
        "when": {"type": "string"},
        "day": {"type": "string", "format": "date"},
        "at": {"type": "string"},
        "span": {"type": "string", "format": "duration"},
    }
    ids = {p["name"]: p["schema"] for p in methods["ids"]["params"]}
    assert ids["key"] == {"type": "string", "format": "uuid"}
    assert ids["more"]["type"] == "array"
    assert ids["more"]["items"] == ids["amount"]
    assert methods["ids"]["paramStructure"] == "by-position"
    shapes = {p["name"]: p for p in methods["shapes"]["params"]}
    assert shapes["kind"]["schema"] == {"enum": [3, "a", "b"]}
    assert "required" not in shapes["level"]
    whoami = methods["whoami"]
    assert [p["name"] for p in whoami["params"]] == ["name"]  # no context, no **extra
    assert {p["name"]: p["schema"] for p in methods["loose"]["params"]} == {"a": {}, "b": {}, "c": {}}
    assert methods["loose"]["result"]["schema"] == {}


@pytest.mark.skipif(Profile is None, reason="pydantic is not installed")
def test_pydantic_models_are_components_too() -> None:
    doc = rich_service().discover()
    components = doc["components"]["schemas"]
    method = by_name(doc)["profile"]
    assert method["params"][0]["schema"] == {"$ref": "#/components/schemas/Profile"}
    assert "displayName" in components["Profile"]["properties"]
    assert components["Profile"]["properties"]["address"] == {"$ref": "#/components/schemas/Address"}
    openrpc_validator().validate(doc)


def schema_validator(doc: dict[str, Any], schema: dict[str, Any]) -> Any:
    """A validator for one schema of C{doc}, its $refs resolved in the document's components."""
    return jsonschema.Draft7Validator({**schema, "components": doc["components"]})


VALUES: list[tuple[str, str, Any, bool]] = [
    ("create_user", "user", {"name": "a", "born": "2000-01-01", "address": {"city": "x"}}, True),
    ("create_user", "user", {"name": 5, "born": "2000-01-01", "address": {"city": "x"}}, False),
    ("create_user", "user", {"name": "a", "address": {"city": "x"}}, False),
    ("create_user", "color", "green", True),
    ("create_user", "color", "blue", False),
    ("structs", "tree", {"value": 1, "children": [{"value": 2, "children": []}]}, True),
    ("structs", "tree", {"value": 1, "children": [{"value": "2"}]}, False),
    ("structs", "item", {"sku": "a", "price": "1.5"}, True),
    ("shapes", "pair", [1, "a"], True),
    ("shapes", "pair", [1, 2], False),
]


@pytest.mark.parametrize(("method", "param", "value", "valid"), VALUES)
def test_the_schemas_accept_what_the_handler_accepts(
    method: str, param: str, value: Any, valid: bool
) -> None:
    """The schema agrees with the conversion on these values: schema and handler describe one type."""
    service = rich_service()
    doc = service.discover()
    [entry] = [p for p in by_name(doc)[method]["params"] if p["name"] == param]
    assert schema_validator(doc, entry["schema"]).is_valid(value) is valid
    converter = service.methods[method].converter
    assert converter is not None
    try:
        converter.convert_dict({param: value})
    except Exception:
        converted = False
    else:
        converted = True
    assert converted is valid
