"""Validate OCSF events against a compiled OCSF schema: the JSON the official compiler writes.

`ocsf-schema-compiler` turns the ocsf/ocsf-schema repository into one JSON document (every class,
object, dictionary type, enum and profile resolved), which is what the OCSF Server loads and
validates events with. This module applies the OCSF Server's event validator (`validator2.ex` of
ocsf/ocsf-server) to that document, rule by rule, so a record it accepts is accepted by OCSF
itself, not by a Python model of OCSF:

- the class, found by `class_uid`; `type_uid` = `class_uid` * 100 + `activity_id`;
  `metadata.version` equal to the schema's version;
- every attribute of the class or object, filtered by the profiles the record lists in
  `metadata.profiles` (a profile's attributes are unknown without it; an unknown profile is an
  error): required ones present, none the class or object does not define (an object with no
  attributes, such as `unmapped`'s `object`, is open), each value of its type, arrays where the
  schema says `is_array`, nested objects checked the same way;
- dictionary types: primitive type, `range`, `max_len`, `regex`, `values`, through subtypes;
- enums: the value is one of the enum's keys, and a sibling caption (`activity_name`, `status`,
  ...) matches the caption of its id; with 99 (Other) it must hold the source's own words, not the
  caption "Other";
- `at_least_one` and `just_one` constraints of classes and objects.

The official validator only warns where it finds a regex not matched, a sibling caption that
differs, "Other" as the caption of 99 and a deprecated class, object, attribute or enum value;
here each of those is a problem too, except deprecation, which `problems(..., strict=False)`
leaves out. It also refuses JSON null (the official validator treats null as absent) and
non-finite floats, which no JSON line can carry.

Use it as a library (`CompiledSchema.load(path).problems(event)`) or from the command line on a
file of JSON lines: `python -m devtools.ocsf_schema SCHEMA.json[.gz] FILE.jsonl`.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

_MIN_INT, _MAX_INT = -(2**63), 2**63 - 1
_MIN_LONG, _MAX_LONG = -(2**127), 2**127 - 1


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing the schema refuses, at a dotted path, with the official validator's kind."""

    path: str
    kind: str
    message: str
    deprecation: bool = False

    def __str__(self) -> str:
        return f"{self.path or '<event>'}: {self.kind}: {self.message}"


class CompiledSchema:
    """One compiled OCSF schema (the `ocsf-schema-compiler` output), ready to validate events."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.version: str = document["version"]
        self._classes_by_uid = {c["uid"]: c for c in document["classes"].values()}
        self._objects: Mapping[str, Any] = document["objects"]
        self._profiles: frozenset[str] = frozenset(document["profiles"])
        self._types: Mapping[str, Any] = document["dictionary"]["types"]["attributes"]

    @classmethod
    def load(cls, path: Path) -> CompiledSchema:
        return _load(path)

    def class_named(self, uid: int) -> Mapping[str, Any]:
        found: Mapping[str, Any] = self._classes_by_uid[uid]
        return found

    def object_named(self, name: str) -> Mapping[str, Any]:
        found: Mapping[str, Any] = self._objects[name]
        return found

    def problems(self, event: object, *, strict: bool = True) -> list[Problem]:
        """Everything the schema refuses in `event`; empty when it is valid."""
        found = list(self._event(event))
        return [p for p in found if strict or not p.deprecation]

    def _event(self, event: object) -> Iterator[Problem]:
        if not isinstance(event, Mapping):
            yield Problem("", "event_not_object", f"an event is a JSON object, not {_kind(event)}")
            return
        class_uid = event.get("class_uid")
        if class_uid is None:
            yield Problem("class_uid", "attribute_required_missing", "required, missing")
            return
        if not _is_integer(class_uid):
            yield Problem("class_uid", "attribute_wrong_type", f"integer_t, not {_kind(class_uid)}")
            return
        schema_class = self._classes_by_uid.get(class_uid)
        if schema_class is None:
            yield Problem("class_uid", "class_uid_unknown", f"no class has uid {class_uid}")
            return
        profiles, problems = self._profiles_of(event)
        yield from problems
        if "@deprecated" in schema_class:
            yield Problem("class_uid", "class_deprecated", schema_class["name"], deprecation=True)
        yield from self._item(event, schema_class, None, profiles)
        yield from _type_uid(event)
        yield from self._version(event)

    def _profiles_of(self, event: Mapping[str, Any]) -> tuple[frozenset[str], list[Problem]]:
        metadata = event.get("metadata")
        listed = metadata.get("profiles") if isinstance(metadata, Mapping) else None
        if not isinstance(listed, list):
            return frozenset(), []  # a wrong type is reported by the attribute check
        problems = [
            Problem(f"metadata.profiles[{i}]", "profile_unknown", f"no profile {name!r}")
            for i, name in enumerate(listed)
            if isinstance(name, str) and name not in self._profiles
        ]
        return frozenset(p for p in listed if isinstance(p, str)), problems

    def _version(self, event: Mapping[str, Any]) -> Iterator[Problem]:
        metadata = event.get("metadata")
        version = metadata.get("version") if isinstance(metadata, Mapping) else None
        if isinstance(version, str) and version != self.version:
            yield Problem(
                "metadata.version",
                "version_incompatible",
                f"the event says {version!r}, the schema is {self.version!r}",
            )

    def _item(
        self,
        item: Mapping[str, Any],
        schema_item: Mapping[str, Any],
        path: str | None,
        profiles: frozenset[str],
    ) -> Iterator[Problem]:
        """A class (path None) or an object: its attributes, unknown keys, enums, constraints."""
        attributes = {
            name: details
            for name, details in schema_item["attributes"].items()
            if not details.get("profiles") or profiles.intersection(details["profiles"])
        }
        for name, details in attributes.items():
            if name in item and item[name] is None:  # the official validator reads it as absent
                yield Problem(_join(path, name), "attribute_value_null", "null, not a value")
            yield from self._attribute(item.get(name), _join(path, name), details, profiles)
        if schema_item["attributes"]:  # an object that defines no attribute is open
            for key in item:
                if key not in attributes:
                    yield _unknown(key, schema_item, path)
        for name, details in attributes.items():
            if "enum" in details and name in item:
                yield from _enum(item, name, details, path)
        yield from _constraints(item, schema_item, path)

    def _attribute(
        self, value: object, path: str, details: Mapping[str, Any], profiles: frozenset[str]
    ) -> Iterator[Problem]:
        if value is None:
            if details.get("requirement") == "required":
                yield Problem(path, "attribute_required_missing", "required, missing or null")
            return
        if "@deprecated" in details:
            yield Problem(path, "attribute_deprecated", _deprecation(details), deprecation=True)
        if details.get("is_array"):
            if not isinstance(value, list):
                yield Problem(path, "attribute_wrong_type", f"an array, not {_kind(value)}")
                return
            for index, element in enumerate(value):
                yield from self._value(element, f"{path}[{index}]", details, profiles)
        else:
            yield from self._value(value, path, details, profiles)

    def _value(
        self, value: object, path: str, details: Mapping[str, Any], profiles: frozenset[str]
    ) -> Iterator[Problem]:
        if value is None:
            yield Problem(path, "attribute_value_null", "null where a value is expected")
            return
        if details["type"] != "object_t":
            yield from self._typed(value, path, details["type"])
            return
        object_name = details["object_type"]
        if not isinstance(value, Mapping):
            yield Problem(path, "attribute_wrong_type", f"{object_name} object, not {_kind(value)}")
            return
        schema_object = self._objects[object_name]
        if "@deprecated" in schema_object:
            yield Problem(path, "object_deprecated", object_name, deprecation=True)
        yield from self._item(value, schema_object, path, profiles)

    def _typed(self, value: object, path: str, type_name: str) -> Iterator[Problem]:
        """A value against a dictionary type and, for a subtype, its primitive type's rules."""
        declared = self._types.get(type_name)
        if declared is None:
            yield Problem(path, "schema_bug_type_missing", f"type {type_name!r} is not defined")
            return
        primitive = declared.get("type", type_name)
        if not _has_primitive_type(value, primitive):
            yield Problem(path, "attribute_wrong_type", f"{type_name}, not {_kind(value)}")
            return
        if isinstance(value, float) and not math.isfinite(value):
            yield Problem(path, "attribute_value_not_finite", f"{value!r} is not a JSON number")
        for rules_name in dict.fromkeys((type_name, primitive)):
            rules = self._types[rules_name]
            yield from _type_rules(value, path, rules_name, rules)


def _unknown(key: str, schema_item: Mapping[str, Any], path: str | None) -> Problem:
    where = "class" if path is None else "object"
    message = f"{where} {schema_item['name']!r} does not define {key!r}"
    if key in schema_item["attributes"]:
        message += " without a profile the event does not list in metadata.profiles"
    return Problem(_join(path, key), "attribute_unknown", message)


def _type_rules(value: object, path: str, name: str, rules: Mapping[str, Any]) -> Iterator[Problem]:
    if "values" in rules and value not in rules["values"]:
        yield Problem(path, "attribute_value_not_in_type_values", f"{value!r} is not a {name}")
    low_high = rules.get("range")
    if low_high and isinstance(value, int | float) and not low_high[0] <= value <= low_high[1]:
        yield Problem(path, "attribute_value_exceeds_range", f"{value!r} outside {low_high}")
    if isinstance(value, str):
        max_len = rules.get("max_len")
        if max_len is not None and len(value) > max_len:
            yield Problem(
                path, "attribute_value_exceeds_max_len", f"{len(value)} > {max_len} ({name})"
            )
        regex = rules.get("regex")
        if regex is not None and not _regex(regex).search(value):
            yield Problem(path, "attribute_value_regex_not_matched", f"{value!r} is not a {name}")


def _enum(
    item: Mapping[str, Any], name: str, details: Mapping[str, Any], parent: str | None
) -> Iterator[Problem]:
    path = _join(parent, name)
    value = item[name]
    values = value if details.get("is_array") and isinstance(value, list) else [value]
    for index, element in enumerate(values):
        where = f"{path}[{index}]" if details.get("is_array") else path
        entry = details["enum"].get(_enum_key(element))
        if entry is None:
            yield Problem(
                where,
                "attribute_enum_value_unknown",
                f"{element!r} is not one of {sorted(details['enum'])}",
            )
            continue
        if "@deprecated" in entry:
            yield Problem(where, "attribute_enum_value_deprecated", repr(element), deprecation=True)
    sibling = details.get("sibling")
    if details.get("is_array") or sibling is None or sibling not in item:
        return
    entry = details["enum"].get(_enum_key(value))
    if entry is None:
        return
    caption, shown = entry["caption"], item[sibling]
    sibling_path = _join(parent, sibling)
    if value == 99 and shown == caption:
        yield Problem(
            sibling_path,
            "attribute_enum_sibling_suspicious_other",
            f"{name} is 99 (Other): {sibling} should say what the source said, not {caption!r}",
        )
    elif value != 99 and shown != caption:
        yield Problem(
            sibling_path,
            "attribute_enum_sibling_incorrect",
            f"{name} {value!r} is {caption!r}, {sibling} says {shown!r}",
        )


def _constraints(
    item: Mapping[str, Any], schema_item: Mapping[str, Any], path: str | None
) -> Iterator[Problem]:
    for kind, names in schema_item.get("constraints", {}).items():
        present = [name for name in names if name in item]
        if kind == "at_least_one" and not present:
            yield Problem(path or "", "constraint_failed", f"at least one of {names}, got none")
        elif kind == "just_one" and len(present) != 1:
            yield Problem(path or "", "constraint_failed", f"exactly one of {names}, got {present}")
        elif kind not in ("at_least_one", "just_one"):
            yield Problem(path or "", "constraint_unknown", f"constraint {kind!r}")


def _type_uid(event: Mapping[str, Any]) -> Iterator[Problem]:
    class_uid, activity_id = event.get("class_uid"), event.get("activity_id")
    type_uid = event.get("type_uid")
    if isinstance(class_uid, int) and isinstance(activity_id, int) and _is_integer(type_uid):
        expected = class_uid * 100 + activity_id
        if type_uid != expected:
            yield Problem("type_uid", "type_uid_incorrect", f"{type_uid} where {expected} is due")


def _has_primitive_type(value: object, primitive: str) -> bool:
    if primitive == "json_t":
        return True
    if primitive == "boolean_t":
        return isinstance(value, bool)
    if primitive == "float_t":
        return isinstance(value, float)
    if primitive == "integer_t":
        return _is_integer(value)
    if primitive == "long_t":
        return (
            isinstance(value, int)
            and not isinstance(value, bool)
            and (_MIN_LONG <= value <= _MAX_LONG)
        )
    if primitive == "string_t":
        return isinstance(value, str)
    return False


def _is_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and _MIN_INT <= value <= _MAX_INT


def _enum_key(value: object) -> str:
    # Enum keys are strings; the official validator compares Elixir's to_string of the value.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _deprecation(details: Mapping[str, Any]) -> str:
    note = details["@deprecated"]
    return (
        f"deprecated since {note.get('since')}: {re.sub(r'<[^>]+>', '', note.get('message', ''))}"
    )


def _join(parent: str | None, name: str) -> str:
    return name if parent is None else f"{parent}.{name}"


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


@cache
def _load(path: Path) -> CompiledSchema:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return CompiledSchema(json.load(handle))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("schema", type=Path, help="compiled OCSF schema (.json or .json.gz)")
    parser.add_argument("events", type=Path, help="a file of OCSF events, one JSON object a line")
    args = parser.parse_args(argv)
    schema = CompiledSchema.load(args.schema)
    bad = 0
    lines = args.events.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        problems = schema.problems(json.loads(line))
        bad += bool(problems)
        for problem in problems:
            print(f"line {number}: {problem}")
    print(f"{len(lines) - bad} valid, {bad} invalid against OCSF {schema.version}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
