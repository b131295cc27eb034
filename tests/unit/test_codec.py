"""The declarative codec of stored state (codec.py): both directions from one declaration, errors
that name the item and the key, versions read for what they promise, upgrade steps in order."""

from __future__ import annotations

import json
import tracemalloc
import zlib
from dataclasses import dataclass, replace
from typing import Any

import pytest

from log_forwarder.codec import (
    INT,
    STR,
    Inline,
    Key,
    Record,
    Schema,
    items,
    optional,
    row,
    set_of,
)
from log_forwarder.cursor import (
    CURSOR_STATE,
    MAX_ERROR_CHARS,
    MAX_QUARANTINED,
    MAX_RECENT_STORED,
    Cursor,
    Outbox,
    Pending,
    ReadPosition,
    StreamSeat,
)
from log_forwarder.detections import DETECTION_STATE, DetectionState
from log_forwarder.exceptions import CheckpointStateError, NewerStateError
from log_forwarder.read_mode import TENANT_STATE, TenantState
from log_forwarder.store import (
    MAX_DECODED_STATE_BYTES,
    decode_state,
    encode_state,
)


@dataclass(frozen=True)
class Inner:
    count: int = 0
    label: str | None = None


@dataclass(frozen=True)
class Thing:
    name: str
    inner: Inner = Inner()
    tags: frozenset[str] = frozenset()
    pairs: tuple[tuple[int, str], ...] = ()


THING = Record(
    Thing,
    Key("n", "name", STR),
    Inline("inner", Record(Inner, Key("c", "count", INT), Key("l", "label", optional(STR)))),
    Key("t", "tags", set_of(STR)),
    Key("p", "pairs", items(row(INT, STR), ordered=True)),
)


def schema(version: int = 1, readable_from: int = 1, upgrades: Any = None) -> Schema[Thing]:
    return Schema("thing state", THING, version, readable_from, upgrades or {}, hint="delete it")


def test_one_declaration_gives_both_directions_and_defaults_for_keys_added_later() -> None:
    thing = Thing("a", Inner(3, None), frozenset({"y", "x"}), ((2, "b"), (1, "a")))
    stored = schema().encode(thing)
    # Inline parts keep their keys at the top level; sets are sorted lists (same set, same bytes)
    assert stored == {
        "v": 1,
        "n": "a",
        "c": 3,
        "l": None,
        "t": ["x", "y"],
        "p": [[2, "b"], [1, "a"]],
    }
    # `ordered` reads back sorted whatever order was stored
    assert schema().decode(json.loads(json.dumps(stored)), item="x") == replace(
        thing, pairs=((1, "a"), (2, "b"))
    )
    # A key written before another existed: the dataclass's default
    assert schema().decode({"v": 1, "n": "a"}, item="x") == Thing("a")


@pytest.mark.parametrize(
    ("stored", "says"),
    [
        ({"v": 1}, "key 'n' is missing"),
        ({"v": 1, "n": 5}, "key 'n' must be a string, not int 5"),
        ({"v": 1, "n": "a", "c": True}, "key 'c' must be an integer, not bool True"),
        ({"v": 1, "n": "a", "p": [[1, "a"], [2]]}, "key 'p[1]' must be a list of 2 values"),
        ({"v": 1, "n": "a", "p": [[1, "a"], ["2", "b"]]}, "key 'p[1][0]' must be an integer"),
        ({"v": 1, "n": "a", "t": "x"}, "key 't' must be a list, not str 'x'"),
        ({"n": "a"}, "key 'v' must be a state version (1, 2, ...), not NoneType None"),
        ({"v": "1", "n": "a"}, "key 'v' must be a state version"),
        ({"v": 2, "written_v": 1}, "key 'written_v' is older than `v` (2)"),
        ([1, 2], "must be an object, not list"),
    ],
)
def test_an_invalid_item_is_refused_naming_the_item_the_key_and_the_rule(
    stored: Any, says: str
) -> None:
    with pytest.raises(CheckpointStateError) as refused:
        schema().decode(stored, item="thing of 'auth0|x'")
    message = str(refused.value)
    assert message.startswith("thing state is invalid (thing of 'auth0|x'")
    assert says in message and message.endswith("; delete it")
    assert not isinstance(refused.value, NewerStateError)


def test_a_newer_release_item_is_read_when_its_floor_allows_and_refused_when_not() -> None:
    # GIVEN items a release writing v3 wrote: additive (readable from v1), and not (from v3)
    additive = {"v": 1, "written_v": 3, "n": "a", "new_key": [1, 2, 3]}
    breaking = {"v": 3, "n": "a"}
    # THEN a v2 reader reads the first as its own (what it does not know dropped on write)
    reader = schema(version=2, upgrades={1: lambda s: s})
    assert reader.decode(additive, item="x") == Thing("a")
    assert reader.encode(reader.decode(additive, item="x")) == {**reader.encode(Thing("a"))}
    assert reader.encode(Thing("a"))["written_v"] == 2
    # AND refuses the second, saying who wrote it
    with pytest.raises(NewerStateError) as refused:
        reader.decode(breaking, item="thing of 'u'")
    assert str(refused.value).startswith(
        "thing of 'u' was written by a newer release (thing state v3, readable from v3; this "
        "release reads up to v2)"
    )


def test_upgrade_steps_run_in_order_from_the_version_that_wrote_the_item() -> None:
    steps: list[int] = []

    def step(n: int, change: Any) -> Any:
        def run(state: dict[str, Any]) -> dict[str, Any]:
            steps.append(n)
            return change(dict(state))

        return run

    upgrades = {
        1: step(1, lambda s: {**s, "n": s.pop("name")}),  # v2 renamed `name` to `n`
        2: step(2, lambda s: {**s, "c": len(s["n"])}),  # v3 counts it
    }
    current = schema(version=3, readable_from=2, upgrades=upgrades)
    assert current.decode({"v": 1, "name": "abc"}, item="x") == Thing("abc", Inner(3))
    assert steps == [1, 2]
    steps.clear()
    assert current.decode({"v": 1, "written_v": 2, "n": "ab"}, item="x") == Thing("ab", Inner(2))
    assert steps == [2]
    assert current.encode(Thing("ab"))["v"] == 2 and current.encode(Thing("ab"))["written_v"] == 3


def test_a_schema_without_a_step_from_every_earlier_version_is_refused_at_import() -> None:
    with pytest.raises(AssertionError, match="an upgrade step from every version"):
        schema(version=3, upgrades={1: lambda s: s})
    with pytest.raises(AssertionError, match="readable_from"):
        schema(version=1, readable_from=2)


# -- the declared items ------------------------------------------------------------------------


def test_every_stored_kind_has_a_version_and_the_steps_up_to_it() -> None:
    for declared in (CURSOR_STATE, TENANT_STATE, DETECTION_STATE):
        assert set(declared.upgrades) == set(range(1, declared.version))
        assert 1 <= declared.readable_from <= declared.version
    # A cursor that never met a push is v1's last shape: releases that read only v1 (`v` == 1)
    # still read it
    assert Cursor().to_state()["v"] == 1 and Cursor().to_state()["written_v"] == 4


def test_a_cursor_that_met_a_push_needs_a_reader_of_the_pushed_events_table() -> None:
    # GIVEN a cursor whose pushed events are recorded in the pushed-events table (v3)
    pushed = Cursor(position=ReadPosition(pushed_until_ms=1_000))
    stored = pushed.to_state()
    # THEN only a v3 reader may read it: an older release would deliver those events again
    assert stored["v"] == 3 and stored["written_v"] == 4
    assert Cursor.from_state(stored) == pushed
    # AND a release reading up to v2 refuses it (and so never writes it)
    older = Schema(
        "checkpoint state", CURSOR_STATE.record, version=2, readable_from=1,
        upgrades=dict(list(CURSOR_STATE.upgrades.items())[:1]),
    )  # fmt: skip
    with pytest.raises(NewerStateError, match="readable from v3"):
        older.decode(stored, item="checkpoint of 'u'")
    # AND the same cursor without it goes back to every reader
    assert Cursor.from_state(replace(pushed, position=ReadPosition()).to_state()).position == (
        ReadPosition()
    )


def test_a_batch_pending_in_a_shared_object_needs_a_reader_that_knows_the_object() -> None:
    # GIVEN a push's intent naming the S3 object it shares with other users' batches (v4)
    pending = Pending("b1", frozenset({"l1"}), 5, 4, shared_object="0123456789abcdef")
    cursor = Cursor(position=ReadPosition(pushed_until_ms=1_000), outbox=Outbox((pending,)))
    stored = cursor.to_state()
    # THEN it round-trips, and only a v4 reader may read it: an older one would redeliver the
    # batch under a key of the user's own, beside the shared object that may hold it
    assert stored["v"] == 4 and Cursor.from_state(stored) == cursor
    older = Schema(
        "checkpoint state", CURSOR_STATE.record, version=3, readable_from=1,
        upgrades=dict(list(CURSOR_STATE.upgrades.items())[:2]),
    )  # fmt: skip
    with pytest.raises(NewerStateError, match="readable from v4"):
        older.decode(stored, item="checkpoint of 'u'")
    # AND once committed (no pending batch names an object) a v3 reader reads it again
    assert replace(cursor, outbox=Outbox()).to_state()["v"] == 3
    # AND an intent written before v4 reads as the user's own object
    (before,) = Cursor.from_state({**stored, "v": 3, "written_v": 3,
        "pending": [{"batch_id": "b1", "log_ids": ["l1"], "lease": 5, "at": 4}]}).outbox.pending  # fmt: skip
    assert before.shared_object is None


def test_the_first_releases_single_pending_intent_is_upgraded_to_the_list() -> None:
    # GIVEN a checkpoint as the first releases wrote it (85b867b..f21f48a): `pending` one object
    first = {
        "v": 1,
        "floor": 1000,
        "watermark": 2000,
        "recent": [[2000, "b"], [1500, "a"]],
        "pending": {"batch_id": "batch-1", "log_ids": ["c", "d"]},
        "backlog": False,
        "forwarded_total": 2,
        "gaps_total": 0,
    }
    # THEN it reads (today's v1 reader iterated the object's keys and failed), its intent kept
    cursor = Cursor.from_state(first, item="checkpoint of 'u'")
    assert cursor.outbox == Outbox((Pending("batch-1", frozenset({"c", "d"})),))
    assert cursor.position.recent == ((1500, "a"), (2000, "b"))
    # AND no intent was null then
    assert not Cursor.from_state({**first, "pending": None}).outbox


def test_a_newer_detection_state_makes_the_whole_checkpoint_a_newer_releases() -> None:
    # GIVEN a checkpoint whose own layout this release reads, holding a detection state it cannot
    counted = DetectionState({"v": 1, "wm": 5, "c": {}})
    cursor = Cursor(seat=StreamSeat(1, 2, "9"), detections=counted.to_state())
    stored = {**cursor.to_state(), "detections": {"v": 5, "rules": "sigma"}}
    # THEN the checkpoint is refused as a newer release's (its writers must leave it untouched)
    with pytest.raises(
        NewerStateError, match=r"^checkpoint of 'u': its detection rules' state was written"
    ):
        Cursor.from_state(stored, item="checkpoint of 'u'")
    # AND one it reads comes back in this release's layout
    assert Cursor.from_state(cursor.to_state()).detections == cursor.detections
    # AND one merely broken (by hand) starts empty, as v1 read it: the cursor is still read
    broken = {**cursor.to_state(), "detections": {"v": 1, "written_v": 2, "c": "x"}}
    assert Cursor.from_state(broken) == replace(cursor, detections=None)


def test_the_tenant_items_mode_and_roster_are_checked() -> None:
    stored = TenantState().to_state()
    with pytest.raises(CheckpointStateError, match="key 'mode' must be one of 'per-user'"):
        TenantState.from_state({**stored, "mode": "sideways"})
    with pytest.raises(CheckpointStateError, match="key 'roster' the tenant item's roster holds"):
        TenantState.from_state({**stored, "roster": "AAAA"})


# -- bounds on read (issue #21 review: a stored item is not trusted to be one a release wrote) --

MB = 2**20


def _zlib(*parts: bytes) -> bytes:
    compressor = zlib.compressobj(9)
    return b"".join(compressor.compress(part) for part in parts) + compressor.flush()


def _decoded(blob: bytes) -> tuple[float, BaseException | None]:
    """Peak MB allocated while the blob is read as a checkpoint state, and what was raised."""
    tracemalloc.start()
    try:
        CURSOR_STATE.decode(decode_state("auth0|u", blob), item="checkpoint of 'auth0|u'")
    except Exception as error:  # judged by the caller
        raised: BaseException | None = error
    else:
        raised = None
    finally:
        peak = tracemalloc.get_traced_memory()[1] / MB
        tracemalloc.stop()
    return peak, raised


@pytest.mark.parametrize(
    ("parts", "said"),
    [
        # 92 KB of zlib that decode to 7.8 million `recent` rows (was 1.5 GB)
        (
            [b'{"v":1,"recent":[', *[b'[1,"a"],' * 131072] * 60, b'[1,"a"]]}'],
            "decodes to more than 4,194,304 bytes",
        ),
        # 387 KB of zlib that decode to one `last_error` of 380 MB (was 797 MB)
        ([b'{"v":1,"last_error":"', *[b"x" * MB] * 380, b'"}'], "decodes to more than"),
        # 436 bytes of zlib that decode to JSON nested 200,000 deep (was a RecursionError that
        # stopped every user of the run)
        ([b'{"v":1,"recent":', b"[" * 200_000, b"]" * 200_000, b"}"], "RecursionError"),
    ],
)
def test_a_small_stored_blob_is_refused_before_it_decodes_to_gigabytes(
    parts: list[bytes], said: str
) -> None:
    blob = _zlib(*parts)
    assert len(blob) < 400_000  # what one DynamoDB item holds
    peak_mb, raised = _decoded(blob)
    assert isinstance(raised, CheckpointStateError), raised
    assert said in str(raised) and "checkpoint state for 'auth0|u' is unreadable" in str(raised)
    assert peak_mb < 40, f"{peak_mb:.0f} MB allocated at the peak"


@pytest.mark.parametrize(
    ("key", "value", "said"),
    [
        ("recent", [[1, f"id{i}"] for i in range(MAX_RECENT_STORED + 1)], "key 'recent' holds"),
        ("ahead", [[1, f"id{i}"] for i in range(MAX_RECENT_STORED + 1)], "key 'ahead' holds"),
        ("quarantined", [[f"d{i}", 1] for i in range(MAX_QUARANTINED + 1)], "'quarantined' holds"),
        ("last_error", "x" * (MAX_ERROR_CHARS + 1), "key 'last_error' holds 501 characters"),
    ],
)
def test_a_key_past_the_bound_its_writer_keeps_is_refused_on_read(
    key: str, value: Any, said: str
) -> None:
    state = {**CURSOR_STATE.encode(Cursor()), key: value}
    with pytest.raises(CheckpointStateError, match="checkpoint state is invalid") as raised:
        CURSOR_STATE.decode(decode_state("auth0|u", encode_state("auth0|u", state)), item="c")
    assert said in str(raised.value)
    # AND the bound itself is readable: what the writer keeps, it can read again
    at_bound = {**state, key: value[:-1]}
    CURSOR_STATE.decode(at_bound, item="c")


def test_a_state_that_would_decode_past_the_bound_is_never_written() -> None:
    state = {**CURSOR_STATE.encode(Cursor()), "lookup": "0" * MAX_DECODED_STATE_BYTES}
    with pytest.raises(CheckpointStateError, match="over the 4,194,304-byte limit"):
        encode_state("auth0|u", state)


def test_a_pushed_events_item_that_decodes_past_the_bound_is_refused_by_name() -> None:
    from log_forwarder.exceptions import CheckpointError
    from log_forwarder.pushed import memory_of

    bomb = _zlib(b"[", *[b'[1,"a"],' * 131_072] * 60, b'[1,"a"]]')
    deep = _zlib(b"[" * 200_000, b"]" * 200_000)
    for blob, said in ((bomb, "decodes to more than 4,194,304 bytes"), (deep, "RecursionError")):
        with pytest.raises(CheckpointError, match=f"pushed-events item 'k' is unreadable .*{said}"):
            memory_of([("k", blob, frozenset(), None)])
        # AND the state a push settled, stored beside its events, is read with the same bound
        with pytest.raises(CheckpointError, match=f"pushed-events item 'k' is unreadable .*{said}"):
            memory_of([("k", _zlib(b'[[1,"a"]]'), frozenset(), blob)])
