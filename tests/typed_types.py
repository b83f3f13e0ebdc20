"""
Types the typed-handler tests convert to, at module level so that their
annotations resolve (the tests use C{from __future__ import annotations}).
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import uuid
from typing import Literal, NamedTuple, Optional, TypedDict

import msgspec


class Color(enum.Enum):
    """A colour (a str enum)."""

    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    """A level (an int enum)."""

    LOW = 1
    HIGH = 2


@dataclasses.dataclass
class Address:
    """Where a user lives."""

    city: str
    zip: str | None = None


@dataclasses.dataclass
class User:
    """A user: a dataclass with nested types."""

    name: str
    born: datetime.date
    address: Address
    tags: list[str] = dataclasses.field(default_factory=list)


class Point(TypedDict):
    """A TypedDict."""

    x: int
    y: int


class Pair(NamedTuple):
    """A NamedTuple (a JSON array)."""

    left: int
    right: str


class Item(msgspec.Struct):
    """A msgspec Struct."""

    sku: str
    price: decimal.Decimal
    color: Color = Color.RED


class Tree(msgspec.Struct):
    """A recursive Struct."""

    value: int
    children: list[Tree] = []


UserId = int

Kind = Literal["a", "b", 3]

MaybeInt = Optional[int]  # noqa: UP045 (the Optional spelling is the point)

SCALARS: tuple[object, ...] = (
    str,
    int,
    float,
    bool,
    datetime.datetime,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    uuid.UUID,
    decimal.Decimal,
)


try:
    import pydantic
except ImportError:  # pydantic is optional: its tests skip
    pydantic = None  # type: ignore[assignment]

if pydantic is not None:

    class Profile(pydantic.BaseModel):
        """A pydantic model, with an alias and a nested model."""

        model_config = pydantic.ConfigDict(populate_by_name=True)

        display_name: str = pydantic.Field(alias="displayName")
        address: Address
        score: float = 0.0
        tags: set[int] = set()
