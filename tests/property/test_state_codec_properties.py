"""Properties of the stored state's codec: any value survives encode -> JSON -> decode, and an
item v1 wrote for any value (tests/state_v1.py: the encoders v1 had) is read as that value and
written back as v1 wrote it, its version header aside.

The detection and tenant properties pin the declarations to the encoders they replaced (those
are v1 still, so the code before the codec passes them too: they fail on a declaration that
drifts from what v1 wrote)."""

from __future__ import annotations

import json
import os
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from log_forwarder.cursor import (
    CURSOR_STATE,
    Cursor,
    Outbox,
    Pending,
    ReadPosition,
    StreamSeat,
    UserStatus,
)
from log_forwarder.detections import DETECTION_STATE, DetectionState
from log_forwarder.read_mode import PER_USER, STREAM, TenantState
from log_forwarder.roster import pack
from tests.state_v1 import (
    CURSOR_KEYS_ADDED_SINCE_V1,
    TENANT_KEYS_ADDED_SINCE_V1,
    BurstV1,
    DetectionStateV1,
    FailureV1,
    cursor_first_v1,
    cursor_v1,
    detections_v1,
    tenant_v1,
)

SCALE = int(os.environ.get("PROPERTY_SCALE", "1"))
EXAMPLES = settings(max_examples=150 * SCALE, deadline=None)

ms = st.integers(0, 2**53)
maybe_ms = st.none() | ms
text = st.text(max_size=30)
log_id = st.text("0123456789abc", min_size=1, max_size=24)
dated_ids = st.lists(st.tuples(ms, log_id), max_size=12, unique=True).map(
    lambda pairs: tuple(sorted(pairs))
)


@st.composite
def detection_states_v1(draw: st.DrawFn) -> DetectionStateV1:
    failures = draw(
        st.lists(st.builds(FailureV1, ms, log_id, st.none() | st.text(max_size=45)), max_size=8)
    )
    burst = draw(st.none() | st.builds(BurstV1, ms, st.integers(0, 99), st.integers(0, 99),
                                       st.booleans()))  # fmt: skip
    sources = draw(st.dictionaries(st.text(max_size=20), ms, max_size=5))
    dedup = draw(st.dictionaries(st.text(max_size=20), st.tuples(ms, st.integers(0, 9)),
                                 max_size=5))  # fmt: skip
    return DetectionStateV1(
        failures=tuple(failures),
        last_failure_ms=draw(maybe_ms),
        burst=burst,
        logins_seen=draw(st.integers(0, 5)),
        sources=tuple(sorted(sources.items())),
        dedup=tuple(sorted((k, m, n) for k, (m, n) in dedup.items())),
    )


# Today's: the engine's correlation state, stored as it is (sigma_step.CorrelationState).
detection_states = st.builds(
    DetectionState,
    st.fixed_dictionaries(
        {"v": st.just(1), "wm": maybe_ms, "c": st.dictionaries(text, st.just({}), max_size=2)}
    ),
)


@st.composite
def cursors(draw: st.DrawFn, *, first_shape: bool = False) -> Cursor:
    """Any cursor; `first_shape`: only what the first releases could store."""
    pending = st.builds(
        Pending,
        text,
        st.frozensets(log_id, max_size=5),
        st.just(0) if first_shape else ms,
        st.just(0) if first_shape else ms,
    )
    pendings = draw(
        st.lists(pending, max_size=1 if first_shape else 3, unique_by=lambda p: p.batch_id)
    )
    position = ReadPosition(
        floor_ms=draw(maybe_ms),
        watermark_ms=draw(maybe_ms),
        recent=draw(dated_ids),
    )
    status = UserStatus(
        backlog=draw(st.booleans()),
        forwarded_total=draw(st.integers(0, 10**9)),
        gaps_total=draw(st.integers(0, 10**6)),
    )
    cursor = Cursor(position, Outbox(tuple(pendings)), status=status)
    if first_shape:
        return cursor
    position = ReadPosition(
        position.floor_ms,
        position.watermark_ms,
        position.recent,
        verified_ms=draw(maybe_ms),
        quarantined=tuple(draw(st.lists(st.tuples(text, ms), max_size=4))),
        ahead=draw(dated_ids),
    )
    status = UserStatus(
        status.backlog,
        status.forwarded_total,
        status.gaps_total,
        missing_since_ms=draw(maybe_ms),
        last_gap=draw(st.none() | st.tuples(maybe_ms, ms, text)),
        last_error=draw(st.none() | text),
        last_error_ms=draw(maybe_ms),
    )
    seat = draw(
        st.none() | st.builds(StreamSeat, ms, ms, log_id, st.frozensets(log_id, max_size=3))
    )
    detections = draw(st.none() | detection_states.map(DetectionState.to_state))
    return Cursor(position, cursor.outbox, seat, status, detections)


def through_json(state: dict[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(json.dumps(state, allow_nan=False))
    return loaded


@EXAMPLES
@given(cursors())
def test_any_cursor_survives_storage_and_one_v1_wrote_is_written_as_built_today(
    cursor: Cursor,
) -> None:
    assert Cursor.from_state(through_json(cursor.to_state())) == cursor
    stored = through_json(cursor_v1(cursor))
    upgraded = Cursor.from_state(stored)
    assert upgraded == cursor
    # encode(v1 upgraded) == encode of the same state built today == what v1 wrote, with the
    # version that wrote it added (`v` stays 1: v1's readers read it)
    assert upgraded.to_state() == cursor.to_state()
    assert cursor.to_state() == {
        **stored,
        **CURSOR_KEYS_ADDED_SINCE_V1,
        "written_v": CURSOR_STATE.version,
    }


@EXAMPLES
@given(cursors(first_shape=True))
def test_a_cursor_the_first_releases_wrote_reads_as_itself(cursor: Cursor) -> None:
    stored = through_json(cursor_first_v1(cursor))
    upgraded = Cursor.from_state(stored)
    assert upgraded == cursor
    assert upgraded.to_state() == cursor.to_state()


@EXAMPLES
@given(detection_states_v1())
def test_a_detection_state_v1_wrote_starts_afresh(state: DetectionStateV1) -> None:
    # The hand-written rules' state means nothing to the Sigma rules (detections._state_from_v1)
    stored = through_json(detections_v1(state))
    assert DetectionState.from_state(stored) == DetectionState()
    assert DETECTION_STATE.encode(DetectionState.from_state(stored)) == {
        "v": 1,
        "written_v": 2,
        "c": {},
    }


@EXAMPLES
@given(detection_states)
def test_a_detection_state_survives_storage(state: DetectionState) -> None:
    assert DetectionState.from_state(through_json(state.to_state())) == state


@EXAMPLES
@given(
    st.builds(
        TenantState,
        mode=st.sampled_from([PER_USER, STREAM]),
        reason=text,
        epoch=ms,
        position=st.none() | log_id,
        verified_ms=maybe_ms,
        complete_reads=st.lists(st.tuples(ms, log_id), max_size=4).map(tuple),
        roster=st.none() | st.lists(text, max_size=5).map(pack),
        read_since_complete=st.integers(0, 10**6),
        rate_eps=st.none() | st.floats(0, 1e6),
        per_user_calls=st.none() | st.floats(0, 1e6),
        period_s=st.none() | st.floats(0, 1e6),
        last_run_ms=maybe_ms,
        probe_position=st.none() | log_id,
        probe_since_ms=maybe_ms,
        probed_at_ms=maybe_ms,
        refused=st.none() | text,
        refused_at_ms=maybe_ms,
    )
)
def test_a_tenant_item_v1_wrote_reads_as_itself(state: TenantState) -> None:
    stored = through_json(tenant_v1(state))
    assert TenantState.from_state(stored) == state
    assert state.to_state() == {**stored, **TENANT_KEYS_ADDED_SINCE_V1}
