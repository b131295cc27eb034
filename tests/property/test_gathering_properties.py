"""Property test of the object a push's users share (sinks/gathering.py): whatever hypothesis
draws (users per push, workers, the shared PUT or a user's own PUT refused or its answer lost,
pushes repeated by the queue, scheduled runs in between, inside a lease or past it), once the
faults stop and a run goes past every lease, S3 holds every event exactly once and no batch is
pending."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from log_forwarder.cursor import Cursor
from log_forwarder.events import iso_ms
from log_forwarder.realtime import Pushed
from log_forwarder.sinks.batching import SHARED_FOLDER
from log_forwarder.sinks.objects import ObjectSink
from tests.fakes import FakeAuth0, InMemoryCheckpointStore, MemoryObjects
from tests.property.test_cursor_properties import BASE_MS, SCALE, make_forwarder

USERS = [f"auth0|p{n}" for n in range(4)]
FAULTS = st.sampled_from([None, None, "refuse", "lose"])

step = st.fixed_dictionaries(
    {
        "events": st.lists(st.integers(0, 3), min_size=len(USERS), max_size=len(USERS)),
        "shared_fault": FAULTS,
        "own_fault": FAULTS,  # the PUT of what a redelivery writes beside the shared object
        "repeat": st.booleans(),  # the queue hands the same batch back once more
        "run_after": st.sampled_from([None, "inside_lease", "past_lease"]),
    }
)


@settings(max_examples=40 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, min_size=1, max_size=4), st.integers(1, 4))
def test_every_event_is_stored_once_whatever_fails(steps: list[dict], workers: int) -> None:
    fault: dict[str, str | None] = {"shared": None, "own": None}

    def faults(key: str) -> str | None:
        return fault["shared"] if f"/{SHARED_FOLDER}/" in key else fault["own"]

    fake = FakeAuth0(now_ms=BASE_MS)
    objects = MemoryObjects(fault=faults)
    store = InMemoryCheckpointStore()
    forwarder = make_forwarder(
        fake, [ObjectSink(objects, "logs/", "s3")], store,  # type: ignore[list-item]
        MAX_CONCURRENT_USERS=str(workers),
    )  # fmt: skip
    forwarder.run(USERS, remaining_ms=lambda: 10**9)
    sent: set[str] = set()
    for number, drawn in enumerate(steps):
        fake.now_ms += 2000
        events = [
            {"log_id": f"9{number:03d}{k}{u}", "date": iso_ms(fake.now_ms - 500) or "",
             "type": "s", "user_id": user}
            for u, (user, count) in enumerate(zip(USERS, drawn["events"], strict=True))
            for k in range(count)
        ]  # fmt: skip
        for e in events:
            fake.add(e)
        sent |= {e["log_id"] for e in events}
        fault["shared"], fault["own"] = drawn["shared_fault"], drawn["own_fault"]
        chunks = Pushed.of(iter(events), frozenset(USERS)).chunks
        for _ in range(2 if drawn["repeat"] else 1):
            forwarder.push(chunks, remaining_ms=lambda: 30_000)
        if drawn["run_after"] is not None:
            fake.now_ms += 600_000 if drawn["run_after"] == "past_lease" else 1000
            forwarder.run(USERS, remaining_ms=lambda: 10**9)
    fault["shared"] = fault["own"] = None
    fake.now_ms += 600_000
    forwarder.run(USERS, remaining_ms=lambda: 10**9)
    stored = objects.log_ids()
    assert set(stored) == sent, sent ^ set(stored)
    assert all(count == 1 for count in stored.values()), stored
    loaded = store.load(USERS)
    assert not any(Cursor.from_state(s.state).outbox for s in loaded.values())
