"""Conversion: one JSON object per line, Auth0's fields untouched, additions under `_forwarder`."""

from __future__ import annotations

import json
from typing import Any

import pytest

from log_forwarder.convert import FORWARDER_KEY, ConvertContext, event_line, gap_line
from log_forwarder.events import MalformedEvent, parse_event
from log_forwarder.records import Gap

CONTEXT = ConvertContext(
    tenant="example.eu.auth0.com",
    watched_user_id="auth0|618223a4e3f49e006948565c",
    forwarded_at_ms=1_790_000_000_000,
    source="user_logs",
)


def test_every_real_event_keeps_all_its_fields_unchanged(
    sample_events: list[dict[str, Any]],
) -> None:
    # GIVEN the 150 real Auth0 events (repeated log_ids, a scope that is an array, extra fields)
    for raw in sample_events:
        # WHEN each is converted
        line = event_line(parse_event(raw), CONTEXT)
        # THEN it is one line of JSON whose Auth0 part equals the input, key order included
        assert "\n" not in line.line
        record = json.loads(line.line)
        added = record.pop(FORWARDER_KEY)
        assert record == raw
        assert list(record) == list(raw)
        assert added["tenant"] == CONTEXT.tenant
        assert added["severity"] in {"error", "warning", "info"}
        assert line.log_id == raw["log_id"]


def test_the_array_scope_and_unknown_fields_pass_through(
    sample_events: list[dict[str, Any]],
) -> None:
    array_scope = next(e for e in sample_events if isinstance(e.get("scope"), list))
    record = json.loads(event_line(parse_event(array_scope), CONTEXT).line)
    assert record["scope"] == array_scope["scope"]
    with_extras = next(e for e in sample_events if "$event_schema" in e)
    record = json.loads(event_line(parse_event(with_extras), CONTEXT).line)
    assert record["$event_schema"] == with_extras["$event_schema"]
    assert record["_id"] == with_extras["_id"]


def test_added_fields_name_the_type_and_its_severity() -> None:
    raw = {"log_id": "1", "date": "2026-11-25T10:00:00.000Z", "type": "fp", "description": None}
    added = json.loads(event_line(parse_event(raw), CONTEXT).line)[FORWARDER_KEY]
    assert added["type_name"].startswith("Failed Login")
    assert added["severity"] == "error"
    assert added["forwarded_at"] == "2026-09-21T14:13:20.000Z"
    assert added["watched_user_id"] == CONTEXT.watched_user_id


def test_timestamp_is_the_auth0_date_not_the_forwarding_time() -> None:
    raw = {"log_id": "1", "date": "2021-11-04T00:15:10.706Z", "type": "s"}
    assert event_line(parse_event(raw), CONTEXT).timestamp_ms == 1_635_984_910_706


def test_newlines_and_unicode_inside_values_stay_on_one_line() -> None:
    raw = {
        "log_id": "1",
        "date": "2026-11-25T10:00:00Z",
        "type": "w",
        "description": "a\nb\r\u2028é😀",
    }
    line = event_line(parse_event(raw), CONTEXT).line
    assert "\n" not in line and "\r" not in line
    assert json.loads(line)["description"] == raw["description"]


def test_an_auth0_field_named_like_ours_is_kept_not_overwritten() -> None:
    raw = {"log_id": "1", "date": "2026-11-25T10:00:00Z", "type": "s", FORWARDER_KEY: {"x": 1}}
    added = json.loads(event_line(parse_event(raw), CONTEXT).line)[FORWARDER_KEY]
    assert added["auth0_value"] == {"x": 1}


@pytest.mark.parametrize(
    "raw",
    [
        {"date": "2026-11-25T10:00:00Z"},
        {"log_id": "", "date": "2026-11-25T10:00:00Z"},
        {"log_id": "1"},
        {"log_id": "1", "date": "yesterday"},
        {"log_id": 5, "date": "2026-11-25T10:00:00Z"},
        ["not", "an", "object"],
    ],
)
def test_events_without_usable_id_or_date_are_rejected_with_a_reason(raw: object) -> None:
    with pytest.raises(MalformedEvent):
        parse_event(raw)


def test_date_object_form_is_accepted() -> None:
    assert (
        parse_event({"log_id": "1", "date": {"$date": "2026-11-25T10:00:00.001Z"}}).date_ms % 1000
        == 1
    )


def test_gap_record_is_one_line_with_its_bounds() -> None:
    gap = Gap(from_ms=1_000, to_ms=61_000, reason="expired")
    context = ConvertContext("t", "auth0|x", forwarded_at_ms=120_000, source="user_logs")
    line = gap_line(gap, context)
    record = json.loads(line.line)[FORWARDER_KEY]
    assert record["record_type"] == "gap"
    assert (record["from"], record["to"]) == (
        "1970-01-01T00:00:01.000Z",
        "1970-01-01T00:01:01.000Z",
    )
    assert line.log_id is None and line.timestamp_ms == 120_000
