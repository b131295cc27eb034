"""Stored state, declared once: each kind of item is a `Schema`, from which both directions (to
the stored JSON object and back, with validation) and every version step are derived.

    CURSOR_STATE = Schema("checkpoint state", Record(Cursor, Key("seat", "seat", ...), ...),
                          version=2, readable_from=1, upgrades={1: cursor_from_v1})
    CURSOR_STATE.encode(cursor)            -> {"v": 1, "written_v": 2, "seat": ..., ...}
    CURSOR_STATE.decode(stored, item=...)  -> Cursor, or CheckpointStateError naming the field

A record maps a frozen dataclass to a JSON object key by key (`Key`), or folds a part's keys
into its own (`Inline`: the cursor keeps its read position's keys at the top level). A key that
is absent takes the dataclass's default, so a key added later reads in items written before it;
a key the dataclass gives no default is required. Unknown keys are ignored.

Versions, which a release must honour for every item it may meet, newer or older:

- `v` is the oldest state version whose reader can read the item, and `written_v` the version
  that wrote it (absent: `v`). The first releases wrote only `v` = 1 and read only items whose
  `v` is 1; an item whose `v` stays 1 is still theirs to read.
- A change another release can safely ignore (a new key whose loss, when that release writes the
  item again without it, costs no event and repeats none) keeps `readable_from`. Any other
  change raises it to the new version: older releases then refuse the item.
- Reading an item written at version n < ours runs `upgrades[n]`, `upgrades[n + 1]`, ... (pure
  steps on the stored object, n -> n + 1), then the record. An item written by a newer release
  is read as ours when its `v` allows (what we do not know is dropped when we write it: it is
  that release's upgrade step that restores it), and refused with NewerStateError otherwise,
  which its callers never write over.

Pure: no I/O, and nothing runs at import but the declarations.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import MISSING, fields
from typing import Any, Generic, TypeVar

from .exceptions import CheckpointStateError, NewerStateError

T = TypeVar("T")
Upgrade = Callable[[dict[str, Any]], dict[str, Any]]

READABLE_FROM_KEY = "v"
WRITTEN_KEY = "written_v"


class Invalid(ValueError):
    """A stored value breaks its key's rule; `path` says where (`pending[0].lease`)."""

    def __init__(self, rule: str, path: str = "") -> None:
        super().__init__(rule)
        self.rule = rule
        self.path = path

    def at(self, step: str) -> Invalid:
        """The same problem, one level further out."""
        inner = self.path
        joined = step + (inner if not inner or inner.startswith("[") else "." + inner)
        return Invalid(self.rule, joined)


# -- kinds: how one value is stored ----------------------------------------------------------


class Kind:
    """How one value is stored: `dump` gives the JSON value, `load` checks one and reads it.
    (Not generic: a typed kind costs the cold import more than it tells mypy.)"""

    __slots__ = ()
    plain = False  # dump is the identity (lists of such values are copied, not walked)

    def dump(self, value: Any) -> Any:
        raise NotImplementedError

    def load(self, stored: Any) -> Any:
        raise NotImplementedError


class _Scalar(Kind):
    # Checked by exact type: JSON gives exactly these (and a bool is not an integer here).
    __slots__ = ("_types", "_what")
    plain = True

    def __init__(self, what: str, *types: type) -> None:
        self._what = what
        self._types = types

    def dump(self, value: Any) -> Any:
        return value

    def load(self, stored: Any) -> Any:
        if type(stored) in self._types:
            return stored
        raise Invalid(f"must be {self._what}, not {_shown(stored)}")


class _Float(_Scalar):
    __slots__ = ()

    def load(self, stored: Any) -> Any:
        return float(super().load(stored))


def _is_int(value: Any) -> bool:
    return type(value) is int


INT: Kind = _Scalar("an integer", int)
FLOAT: Kind = _Float("a number", float, int)
STR: Kind = _Scalar("a string", str)
BOOL: Kind = _Scalar("true or false", bool)


class _Text(_Scalar):
    """A string of at most `most` characters: what its writer cuts it to."""

    __slots__ = ("_most",)

    def __init__(self, most: int) -> None:
        super().__init__("a string", str)
        self._most = most

    def load(self, stored: Any) -> Any:
        value = super().load(stored)
        if len(value) > self._most:
            raise Invalid(f"holds {len(value):,} characters, more than the {self._most:,} it may")
        return value


def text(most: int) -> Kind:
    """A string no longer than `most` characters, on read as on write."""
    return _Text(most)


class optional(Kind):
    """The value, or null."""

    __slots__ = ("_kind",)

    def __init__(self, kind: Kind) -> None:
        self._kind = kind

    def dump(self, value: Any) -> Any:
        return None if value is None else self._kind.dump(value)

    def load(self, stored: Any) -> Any:
        return None if stored is None else self._kind.load(stored)


class items(Kind):
    """A tuple stored as a list; `ordered`: read back sorted, whatever order was stored; `most`:
    the most values its writer keeps, refused on read beyond it (a stored item is not trusted to
    be one this code wrote)."""

    __slots__ = ("_kind", "_most", "_ordered")

    def __init__(self, kind: Kind, *, ordered: bool = False, most: int | None = None) -> None:
        self._kind = kind
        self._ordered = ordered
        self._most = most

    def dump(self, value: Any) -> Any:
        kind = self._kind
        return list(value) if kind.plain else [kind.dump(item) for item in value]

    def load(self, stored: Any) -> Any:
        _at_most(self._most, stored)
        loaded = _each(self._kind, stored)
        return tuple(sorted(loaded) if self._ordered else loaded)


class set_of(Kind):
    """A frozenset stored as a sorted list (the same set always gives the same bytes)."""

    __slots__ = ("_kind",)

    def __init__(self, kind: Kind) -> None:
        self._kind = kind

    def dump(self, value: Any) -> Any:
        return sorted(self._kind.dump(item) for item in value)

    def load(self, stored: Any) -> Any:
        return frozenset(_each(self._kind, stored))


class row(Kind):
    """A fixed-length tuple stored as a list, or with `into`, a dataclass stored as the list
    of its fields in order."""

    __slots__ = ("_into", "_kinds", "_scalars", "_types")

    def __init__(self, *kinds: Kind, into: type | None = None) -> None:
        self._kinds = kinds
        self._into = into
        # A float stored as an integer is read as a float: through its kind.
        self._scalars = into is None and all(
            isinstance(kind, _Scalar) and not isinstance(kind, _Float) for kind in kinds
        )
        # The exact types each value may have, for the rows of scalars a cursor holds thousands
        # of (its overlap window): read at the cost of a type check each.
        self._types = [kind._types for kind in kinds if isinstance(kind, _Scalar)]

    def dump(self, value: Any) -> Any:
        if self._scalars:
            return list(value)
        values = value if self._into is None else [getattr(value, f.name) for f in fields(value)]
        return [kind.dump(item) for kind, item in zip(self._kinds, values, strict=True)]

    def load(self, stored: Any) -> Any:
        kinds = self._kinds
        if type(stored) is not list or len(stored) != len(kinds):
            raise Invalid(f"must be a list of {len(kinds)} values, not {_shown(stored)}")
        if self._scalars:  # (indexing: a zip here costs the cursor's decode several times)
            types = self._types
            for index in range(len(types)):
                if type(stored[index]) not in types[index]:
                    raise _where(kinds, stored)
            return tuple(stored)
        try:
            values = [kind.load(item) for kind, item in zip(kinds, stored, strict=True)]
        except Invalid:
            raise _where(kinds, stored) from None
        return tuple(values) if self._into is None else self._into(*values)


class checked(Kind):
    """A value with a rule of its own beyond its kind: `valid` raises ValueError or
    CheckpointStateError for a value that breaks it."""

    __slots__ = ("_kind", "_valid")

    def __init__(self, kind: Kind, valid: Callable[[Any], object]) -> None:
        self._kind = kind
        self._valid = valid

    def dump(self, value: Any) -> Any:
        return self._kind.dump(value)

    def load(self, stored: Any) -> Any:
        value = self._kind.load(stored)
        try:
            self._valid(value)
        except (ValueError, CheckpointStateError) as error:
            raise Invalid(str(error)) from None
        return value


def one_of(*choices: str) -> Kind:
    return checked(STR, lambda value: _choice(value, choices))


def _choice(value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"must be one of {', '.join(map(repr, choices))}, not {value!r}")


# -- records: a dataclass as a JSON object ---------------------------------------------------


class Key:
    """The stored key `name` holds the dataclass attribute `attribute`, as `kind` says.
    `omit_none`: a None is not stored (an absent key reads as the default, None): a key added
    later that is mostly unset then leaves the items without it byte for byte as they were."""

    __slots__ = ("attribute", "kind", "name", "omit_none")

    def __init__(self, name: str, attribute: str, kind: Kind, *, omit_none: bool = False) -> None:
        self.name = name
        self.attribute = attribute
        self.kind = kind
        self.omit_none = omit_none


class Inline:
    """The attribute `attribute` is a record whose keys live in this object's own."""

    __slots__ = ("attribute", "record")

    def __init__(self, attribute: str, record: Record[Any]) -> None:
        self.attribute = attribute
        self.record = record


class Record(Kind, Generic[T]):
    """A frozen dataclass stored key by key; an absent key takes the dataclass's default."""

    def __init__(self, cls: type[T], *parts: Key | Inline) -> None:
        self.cls = cls
        self.parts = parts
        defaults = {f.name for f in fields(cls) if f.default is not MISSING}  # type: ignore[arg-type]
        defaults |= {f.name for f in fields(cls) if f.default_factory is not MISSING}  # type: ignore[arg-type]
        self._required = frozenset(
            part.name for part in parts if isinstance(part, Key) and part.attribute not in defaults
        )

    def dump(self, value: T) -> dict[str, Any]:
        stored: dict[str, Any] = {}
        for part in self.parts:
            if isinstance(part, Inline):
                stored.update(part.record.dump(getattr(value, part.attribute)))
            else:
                attribute = getattr(value, part.attribute)
                if attribute is None and part.omit_none:
                    continue
                stored[part.name] = part.kind.dump(attribute)
        return stored

    def load(self, stored: Any) -> T:
        if not isinstance(stored, Mapping):
            raise Invalid(f"must be an object, not {_shown(stored)}")
        values: dict[str, Any] = {}
        for part in self.parts:
            if isinstance(part, Inline):
                values[part.attribute] = part.record.load(stored)
            elif part.name in stored:
                try:
                    values[part.attribute] = part.kind.load(stored[part.name])
                except Invalid as problem:
                    raise problem.at(part.name) from None
            elif part.name in self._required:
                raise Invalid("is missing", part.name)
        return self.cls(**values)

    def keys(self) -> Iterable[str]:
        """Every key this record stores, its inline parts' included."""
        for part in self.parts:
            if isinstance(part, Inline):
                yield from part.record.keys()
            else:
                yield part.name


# -- schemas: a kind of item, with its versions ----------------------------------------------


class Schema(Generic[T]):
    """One kind of stored item: the record, the version this release writes, the oldest version
    whose reader can read what it writes, and the step from every earlier version.

    `hint` says what an operator can do about an item that cannot be read.
    """

    def __init__(
        self,
        name: str,
        record: Record[T],
        version: int,
        readable_from: int,
        upgrades: Mapping[int, Upgrade],
        hint: str = "",
        needs_reader: Callable[[T], int] | None = None,
    ) -> None:
        self.name = name
        self.record = record
        self.version = version
        self.readable_from = readable_from
        self.upgrades = upgrades
        self.hint = hint
        # The oldest reader one value needs, when it depends on what it holds (at least
        # readable_from): a layout whose new key only matters once set leaves every item that
        # does not set it readable by the releases before it.
        self._needs_reader = needs_reader
        # Checked once, at import: a version with no way up from an earlier one is a bug.
        if set(self.upgrades) != set(range(1, self.version)):
            raise AssertionError(f"{self.name}: an upgrade step from every version before v"
                                 f"{self.version}, not {sorted(self.upgrades)}")  # fmt: skip
        if not 1 <= self.readable_from <= self.version:
            raise AssertionError(f"{self.name}: readable_from must be within 1..{self.version}")

    def header(self, value: T) -> dict[str, int]:
        floor = self.readable_from
        if self._needs_reader is not None:
            floor = max(floor, self._needs_reader(value))
        if floor == self.version:
            return {READABLE_FROM_KEY: self.version}
        return {READABLE_FROM_KEY: floor, WRITTEN_KEY: self.version}

    def encode(self, value: T) -> dict[str, Any]:
        return {**self.record.dump(value), **self.header(value)}

    def decode(self, stored: object, *, item: str) -> T:
        """The value of a stored object, upgraded from the version that wrote it; `item` names
        the item in errors (`checkpoint of 'auth0|abc'`)."""
        current = self.current(stored, item=item)
        try:
            return self.record.load(current)
        except Invalid as problem:
            raise self._invalid(item, problem) from None
        except CheckpointStateError as error:  # a versioned record inside this one
            raise type(error)(f"{item}: {error}") from None

    def current(self, stored: object, *, item: str) -> dict[str, Any]:
        """The stored object in this release's layout: upgraded, or as a newer release wrote
        it when that one allows older readers; NewerStateError when it does not."""
        if not isinstance(stored, Mapping):
            raise self._invalid(item, Invalid(f"must be an object, not {_shown(stored)}"))
        readable_from, written = self.versions(stored, item=item)
        if readable_from > self.version:
            raise NewerStateError(
                f"{item} was written by a newer release ({self.name} v{written}, readable "
                f"from v{readable_from}; this release reads up to v{self.version}): not read, "
                "and left untouched until a release that reads it runs"
            )
        state = dict(stored)
        for version in range(written, self.version):
            try:
                state = self.upgrades[version](state)
            except Invalid as problem:
                raise self._invalid(item, problem, f"upgrading it from v{version}") from None
        return state

    def versions(self, stored: Mapping[str, Any], *, item: str) -> tuple[int, int]:
        """(oldest reader version, version that wrote it) of a stored object."""
        readable_from = self._version_at(stored, READABLE_FROM_KEY, None, item)
        written = self._version_at(stored, WRITTEN_KEY, readable_from, item)
        if written < readable_from:
            raise self._invalid(item, Invalid(f"is older than `v` ({readable_from})", WRITTEN_KEY))
        return readable_from, written

    def _version_at(
        self, stored: Mapping[str, Any], key: str, default: int | None, item: str
    ) -> int:
        value = stored.get(key, default)
        if not _is_int(value) or value < 1:
            problem = Invalid(f"must be a state version (1, 2, ...), not {_shown(value)}", key)
            raise self._invalid(item, problem)
        return int(value)

    def _invalid(self, item: str, problem: Invalid, doing: str = "") -> CheckpointStateError:
        where = f"{item}, key {problem.path!r}" if problem.path else item
        during = f", {doing}" if doing else ""
        hint = f"; {self.hint}" if self.hint else ""
        return CheckpointStateError(
            f"{self.name} is invalid ({where} {problem.rule}{during}){hint}"
        )


class versioned(Kind):
    """An object with a schema and versions of its own inside another record (the detection
    rules' state in a checkpoint), kept as the mapping its own module reads: checked, upgraded
    and written in this release's layout as the outer item is read. A newer one that this
    release cannot read raises NewerStateError: the outer item is not read either (nor written).
    `lenient`: one that is merely invalid reads as null (state that only advises, such as the
    rules', starts over rather than stop the item holding it)."""

    __slots__ = ("_item", "_lenient", "_schema")

    def __init__(self, schema: Schema[Any], item: str, *, lenient: bool = False) -> None:
        self._schema = schema
        self._item = item
        self._lenient = lenient

    def dump(self, value: Mapping[str, Any]) -> Any:
        return dict(value)

    def load(self, stored: Any) -> Any:
        try:
            return self._schema.encode(self._schema.decode(stored, item=self._item))
        except NewerStateError:
            raise
        except CheckpointStateError:
            if self._lenient:
                return None
            raise


class TooLarge(ValueError):
    """A stored blob decodes to more than it may (`inflated`)."""


def _at_most(most: int | None, stored: Any) -> None:
    if most is not None and type(stored) is list and len(stored) > most:
        raise Invalid(f"holds {len(stored):,} values, more than the {most:,} it may")


def inflated(blob: bytes, most: int) -> bytes:
    """A zlib blob's bytes, refused (ValueError) once they pass `most`: a stored blob a few KB
    long may decode to gigabytes, and no more than `most` of it is ever produced."""
    inflater = zlib.decompressobj()
    data = inflater.decompress(blob, most + 1)
    if len(data) > most:
        raise TooLarge(f"it decodes to more than {most:,} bytes, the most a state may")
    return data + inflater.flush()


def _each(kind: Kind, stored: Any) -> list[Any]:
    if type(stored) is not list:
        raise Invalid(f"must be a list, not {_shown(stored)}")
    load = kind.load
    try:
        return [load(item) for item in stored]
    except Invalid:
        raise _where([kind] * len(stored), stored) from None


def _where(kinds: Sequence[Kind], stored: list[Any]) -> Invalid:
    """The problem of the first value that breaks its kind, with its index (looked for only
    once one did: the loops above stay lean)."""
    for index, (kind, item) in enumerate(zip(kinds, stored, strict=True)):
        try:
            kind.load(item)
        except Invalid as problem:
            return problem.at(f"[{index}]")
    raise AssertionError("no value breaks its kind")


def _shown(value: Any) -> str:
    """A stored value in an error: its type, and the value itself if short (never the whole of
    a large one: errors are logged)."""
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"
