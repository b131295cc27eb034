"""A push's users share one S3 object (sinks/gathering.py): one PUT per push, not per user, and
the delivery protocol still loses nothing and repeats nothing when that PUT fails, loses its
answer, or a user never arrives."""

from __future__ import annotations

import time
from collections.abc import Callable

from log_forwarder.cursor import Cursor
from log_forwarder.events import iso_ms
from log_forwarder.forwarder import FINISH_RESERVE_MS, Forwarder
from log_forwarder.realtime import Pushed
from log_forwarder.records import Delivery, DeliveryReport
from log_forwarder.report import RunReport
from log_forwarder.retry import AWS_ATTEMPT_S
from log_forwarder.sinks.batching import SHARED_FOLDER
from log_forwarder.sinks.objects import ObjectSink
from tests.fakes import FakeAuth0, InMemoryCheckpointStore, MemoryObjects, RecordingSink
from tests.property.test_cursor_properties import BASE_MS, make_forwarder

USERS = [f"auth0|g{n}" for n in range(5)]


def event(user: str, n: int, at_ms: int) -> dict[str, str]:
    return {"log_id": f"9{n:08d}{user[-1]}", "date": iso_ms(at_ms) or "", "type": "s",
            "user_id": user}  # fmt: skip


class World:
    """Five watched users with checkpoints, an S3 sink over `objects`, Auth0 holding whatever
    was pushed (visible to the reads at once)."""

    def __init__(self, objects: MemoryObjects, *, sinks: list[RecordingSink] | None = None,
                 workers: int = 5) -> None:  # fmt: skip
        self.fake = FakeAuth0(now_ms=BASE_MS)
        self.objects = objects
        self.store = InMemoryCheckpointStore()
        s3 = ObjectSink(objects, "logs/", "s3")
        self.forwarder: Forwarder = make_forwarder(
            self.fake, [*(sinks or []), s3], self.store,  # type: ignore[list-item]
            MAX_CONCURRENT_USERS=str(workers),
        )  # fmt: skip
        self.forwarder.run(USERS, remaining_ms=lambda: 10**9)  # each user's checkpoint
        self.sent = 0

    def push(
        self, per_user: int = 2, remaining_ms: Callable[[], int] = lambda: 30_000
    ) -> RunReport:
        self.fake.now_ms += 1000
        events = [
            event(user, self.sent + k, self.fake.now_ms - 500) for user in USERS
            for k in range(per_user)
        ]  # fmt: skip
        self.sent += per_user
        for e in events:
            self.fake.add(e)
        chunks = Pushed.of(iter(events), frozenset(USERS)).chunks
        return self.forwarder.push(chunks, remaining_ms=remaining_ms)

    def pending(self) -> dict[str, set[str | None]]:
        loaded = self.store.load(USERS)
        return {
            user: {p.shared_object for p in Cursor.from_state(stored.state).outbox.pending}
            for user, stored in loaded.items()
            if Cursor.from_state(stored.state).outbox
        }


def test_a_push_puts_one_object_for_all_its_users() -> None:
    # GIVEN five watched users, each pushed two events in one batch
    world = World(MemoryObjects())
    before = len(world.objects.puts)
    # WHEN the push delivers them
    report = world.push()
    # THEN one object holds all ten events, in the day's shared folder, each event once
    puts = world.objects.puts[before:]
    assert len(puts) == 1 and f"/{SHARED_FOLDER}/" in puts[0], puts
    assert sorted(world.objects.log_ids().values()) == [1] * 10
    assert all(u.forwarded == 2 and not u.error for u in report.users)
    assert world.pending() == {}  # every user committed


def test_the_users_beyond_the_workers_share_the_next_object() -> None:
    # GIVEN two workers for five users (waves of the sessions seated together)
    world = World(MemoryObjects(), workers=2)
    before = len(world.objects.puts)
    world.push()
    # THEN fewer objects than users, and every event once
    assert 1 <= len(world.objects.puts[before:]) < len(USERS)
    assert sorted(world.objects.log_ids().values()) == [1] * 10
    assert world.pending() == {}


def test_a_lost_answer_leaves_every_batch_pending_on_the_object_and_nothing_repeats() -> None:
    # GIVEN a push whose shared PUT is stored but its answer lost
    lose = {"on": True}
    objects = MemoryObjects(fault=lambda key: "lose" if lose["on"] and SHARED_FOLDER in key
                            else None)  # fmt: skip
    world = World(objects)
    report = world.push()
    assert all(u.error for u in report.users)
    # THEN each user's intent names that one object
    (key,) = [k for k in objects.puts if SHARED_FOLDER in k]
    object_id = key.rsplit("/", 1)[1].removesuffix(".jsonl.gz")
    assert world.pending() == {user: {object_id} for user in USERS}
    # WHEN the next run redelivers them (the queue's redelivery would go the same way)
    lose["on"] = False
    puts = len(objects.puts)
    world.fake.now_ms += 600_000  # past every lease
    world.forwarder.run(USERS, remaining_ms=lambda: 10**9)
    # THEN each finds its lines in the object: nothing written again, nothing pending
    assert objects.puts[puts:] == []
    assert sorted(objects.log_ids().values()) == [1] * 10
    assert world.pending() == {}


def test_a_refused_put_is_redelivered_into_the_object_and_beside_it() -> None:
    # GIVEN a push whose shared PUT S3 refused: nothing stored
    refuse = {"on": True}
    objects = MemoryObjects(fault=lambda key: "refuse" if refuse["on"] and SHARED_FOLDER in key
                            else None)  # fmt: skip
    world = World(objects)
    world.push()
    assert objects.log_ids() == {} and set(world.pending()) == set(USERS)
    # WHEN the next run redelivers each user's batch alone
    refuse["on"] = False
    world.fake.now_ms += 600_000
    world.forwarder.run(USERS, remaining_ms=lambda: 10**9)
    # THEN the first puts the object with its lines, the others find it and write theirs beside
    # it: every event once, nothing pending
    assert sorted(objects.log_ids().values()) == [1] * 10
    assert world.pending() == {}


def test_a_user_with_nothing_to_deliver_is_not_waited_for() -> None:
    # GIVEN a push whose events for one user are already delivered (a repeat of the stream)
    world = World(MemoryObjects())
    world.push()
    repeat = [event(USERS[0], 0, world.fake.now_ms - 500)]
    fresh = [event(u, 100, world.fake.now_ms) for u in USERS[1:]]
    for e in fresh:
        world.fake.add(e)
    chunks = Pushed.of(iter(repeat + fresh), frozenset(USERS)).chunks
    started = time.monotonic()
    before = len(world.objects.puts)
    # WHEN the push delivers them
    report = world.forwarder.push(chunks, remaining_ms=lambda: 30_000)
    # THEN the others' object went without it: one put, well before any deadline
    assert time.monotonic() - started < 5
    assert len(world.objects.puts[before:]) == 1
    assert {u.user_id: u.duplicates for u in report.users}[USERS[0]] == 1
    assert sorted(world.objects.log_ids().values()) == [1] * 14


class SlowFor:
    """A CloudWatch stand-in that takes `seconds` for one user's batches."""

    name = "cloudwatch"

    def __init__(self, user: str, seconds: float) -> None:
        self.user, self.seconds = user, seconds

    def deliver(self, delivery: Delivery) -> DeliveryReport:
        if delivery.user_id == self.user:
            time.sleep(self.seconds)
        return DeliveryReport(self.name, accepted=len(delivery.lines))


def test_waiting_for_a_slow_user_ends_with_the_time_left_and_nothing_is_lost() -> None:
    # GIVEN one user whose CloudWatch batch takes 2 s, and an invocation whose time left lets
    # the others wait about 1 s for it before the shared PUT would have no time
    world = World(MemoryObjects(), sinks=[SlowFor(USERS[0], 2.0)])  # type: ignore[list-item]
    started = time.monotonic()
    end = started + AWS_ATTEMPT_S + FINISH_RESERVE_MS / 1000 + 1.0
    report = world.push(remaining_ms=lambda: int((end - time.monotonic()) * 1000))
    # THEN the others stopped waiting when the PUT would no longer have had its time (their
    # messages go back to the queue); the slow user, arriving alone, put its own lines under
    # the object and had no time left to commit: every batch is pending on that object
    assert time.monotonic() - started < AWS_ATTEMPT_S
    assert all(u.deferred and not u.forwarded for u in report.users), report.users
    assert set(world.pending()) == set(USERS)
    assert set(world.objects.log_ids()) <= {event(USERS[0], n, 0)["log_id"] for n in (0, 1)}
    # AND the next run delivers them: every event once
    world.fake.now_ms += 600_000
    world.forwarder.run(USERS, remaining_ms=lambda: 10**9)
    assert sorted(world.objects.log_ids().values()) == [1] * 10
    assert world.pending() == {}
