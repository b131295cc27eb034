"""The real-time function's input: what it takes from an invocation, and whose events it keeps."""

from __future__ import annotations

import json
from pathlib import Path

from log_forwarder.chunk import RealtimeSpan
from log_forwarder.realtime import Pushed, pushed_entries

ROOT = Path(__file__).resolve().parents[2]
BATCH = json.loads((ROOT / "events" / "realtime-event.json").read_text(encoding="utf-8"))
SAMPLE = json.loads(BATCH["Records"][0]["body"])  # the EventBridge event the queue carries
WATCHED = frozenset({"auth0|64b7f0c2e4a1d9a3c1f00a11", "auth0|b"})


def event_for(user: str, log_id: str, **data: object) -> dict[str, object]:
    detail = {"log_id": log_id, "data": {"log_id": log_id, "date": "2026-12-04T06:30:00Z",
                                         "type": "s", "user_id": user, **data}}  # fmt: skip
    return {**SAMPLE, "detail": detail}


def test_the_sample_batch_is_one_watched_users_event() -> None:
    pushed = Pushed.of(pushed_entries(BATCH), WATCHED)
    (user,) = pushed.chunks
    chunk = pushed.chunks[user]
    assert user == SAMPLE["detail"]["data"]["user_id"]
    assert [e.log_id for e in chunk.events] == [SAMPLE["detail"]["log_id"]]
    assert isinstance(chunk.span, RealtimeSpan)
    # the event passes through untouched: every field of Auth0's, unknown ones too
    assert dict(chunk.events[0].raw) == SAMPLE["detail"]["data"]


def test_an_sqs_batch_of_events_is_grouped_by_watched_user_and_the_rest_is_counted() -> None:
    bodies = [
        event_for("auth0|b", "1"),
        event_for("auth0|other", "2"),
        event_for("auth0|b", "3"),
        {**SAMPLE, "detail": {"log_id": "4", "data": {"type": "s"}}},  # names no user
    ]
    batch = {"Records": [{"body": json.dumps(body)} for body in bodies]}
    pushed = Pushed.of(pushed_entries(batch), WATCHED)
    assert list(pushed.chunks) == ["auth0|b"]
    assert [e.log_id for e in pushed.chunks["auth0|b"].events] == ["1", "3"]
    assert pushed.ignored == 2


def test_a_detail_that_is_the_log_event_itself_is_taken_too() -> None:
    flat = {**SAMPLE, "detail": {"log_id": "9", "date": "2026-12-04T06:30:00Z",
                                 "user_id": "auth0|b", "type": "f"}}  # fmt: skip
    pushed = Pushed.of(pushed_entries(flat), WATCHED)
    assert [e.log_id for e in pushed.chunks["auth0|b"].events] == ["9"]


def test_a_watched_users_malformed_entry_is_kept_for_quarantine_not_dropped() -> None:
    # GIVEN an entry of a watched user with no usable date
    bad = event_for("auth0|b", "5", date="yesterday")
    # WHEN pushed, THEN it travels as a malformed entry (the planner quarantines it)
    chunk = Pushed.of(pushed_entries(bad), WATCHED).chunks["auth0|b"]
    assert chunk.events == []
    assert [m.reason for m in chunk.malformed] == ["date 'yesterday' is not ISO-8601"]
    assert chunk.returned == 1


def test_an_invocation_with_nothing_usable_is_empty_not_an_error() -> None:
    garbage = {"Records": [{"body": "not json"}, {"body": "[1, 2]"}, {}, "text", {"body": 7}]}
    deep = {"Records": [{"body": "[" * 100_000 + "]" * 100_000}]}
    odd = ({"Records": {"a": 1}}, {"Records": "x"}, garbage, deep)
    for event in ({}, {"detail": None}, {"detail": "text"}, {"Records": []}, *odd):
        pushed = Pushed.of(pushed_entries(event), WATCHED)
        assert pushed.chunks == {}


def test_an_event_whose_data_has_no_log_id_takes_the_envelopes() -> None:
    # GIVEN envelopes naming the event in detail.log_id only, and one in both places
    bare = event_for("auth0|b", "11")
    del bare["detail"]["data"]["log_id"]  # type: ignore[index]
    both = event_for("auth0|b", "12")
    batch = {"Records": [{"body": json.dumps(body)} for body in (bare, both)]}
    # WHEN pushed
    pushed = Pushed.of(pushed_entries(batch), WATCHED)
    # THEN both are events of the user (not malformed), each under its id
    chunk = pushed.chunks["auth0|b"]
    assert [e.log_id for e in chunk.events] == ["11", "12"]
    assert chunk.malformed == []


def test_the_real_time_function_logs_under_the_sqs_batchs_message_id() -> None:
    from jmespath import search

    from log_forwarder.realtime import SQS_BATCH_OR_EVENT

    batch = {"Records": [{"messageId": "m-1", "body": "{}"}, {"messageId": "m-2", "body": "{}"}]}
    assert search(SQS_BATCH_OR_EVENT, batch) == "m-1"
    assert search(SQS_BATCH_OR_EVENT, SAMPLE) == SAMPLE["id"]
