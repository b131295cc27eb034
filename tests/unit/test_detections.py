"""Detections: each rule fires on its trigger and not on its near miss; state is small and sound.

Properties (hypothesis): splitting one sequence into two runs at any point, with the state stored
as JSON in between, gives exactly the findings of one pass; 10,000 random events keep the state
under its bound; odd events never raise.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from log_forwarder.config import detection_settings
from log_forwarder.detections import (
    RULES,
    DetectionSettings,
    DetectionState,
    Finding,
    acting_user,
    evaluate,
    finding_record,
)
from log_forwarder.events import LogEvent, parse_event
from log_forwarder.exceptions import ConfigError
from log_forwarder.sinks.eventbridge import (
    EVENTBRIDGE_ENTRY_LIMIT,
    MAX_EVENTBRIDGE_LOG_IDS,
    eventbridge_entry,
    eventbridge_entry_size,
)

SCALE = int(os.environ.get("PROPERTY_SCALE", "1"))
USER = "auth0|watched"
T0 = 1_790_000_000_000
MINUTE = 60_000
DAY = 86_400_000
DEFAULTS = DetectionSettings()
STATE_BOUND_BYTES = 16 * 1024

_counter = iter(range(10**9))


def ev(code: object, at_ms: int, log_id: str | None = None, **fields: Any) -> LogEvent:
    """A minimal Auth0 event of type `code` at `at_ms`, with extra raw fields."""
    log_id = log_id or f"900{next(_counter):053d}"
    raw: dict[str, Any] = {"type": code, "log_id": log_id, "user_id": USER, **fields}
    return LogEvent(date_ms=at_ms, log_id=log_id, raw=raw)


def login(
    at_ms: int, country: str | None = "US", ip: str = "198.51.100.7", **fields: Any
) -> LogEvent:
    location = {"country_code": country, "city_name": "Somewhere"} if country else None
    return ev("s", at_ms, ip=ip, location_info=location, **fields)


def run(
    events: Sequence[LogEvent],
    state: DetectionState | None = None,
    detection_settings: DetectionSettings = DEFAULTS,
) -> tuple[list[Finding], DetectionState]:
    return evaluate(USER, events, state or DetectionState(), detection_settings)


def failures(count: int, start: int = T0, step: int = MINUTE, code: str = "fp") -> list[LogEvent]:
    return [ev(code, start + i * step, ip=f"203.0.113.{i % 250 + 1}") for i in range(count)]


def mgmt(
    code: str, actor: object, method: str = "patch", path: str = "/api/v2/users/x1"
) -> LogEvent:
    auth: dict[str, Any] = {"strategy": "jwt", "user": actor if isinstance(actor, dict) else {}}
    if isinstance(actor, str):
        auth["user"] = {"user_id": actor, "name": "someone"}
    details = {
        "request": {"method": method, "path": path, "auth": auth, "ip": "192.0.2.9"},
        "response": {"statusCode": 200},
    }
    raw_user = actor if isinstance(actor, str) else None
    return LogEvent(
        date_ms=T0,
        log_id=f"900{next(_counter):053d}",
        raw={"type": code, "details": details, "user_id": raw_user, "ip": "192.0.2.9"},
    )


# -- failed_login_burst -----------------------------------------------------------------------


def test_n_failures_within_the_window_fire_one_burst_finding() -> None:
    # GIVEN 10 failed logins one minute apart (default: 10 within 60 minutes)
    events = failures(10)
    # WHEN the rules run
    found, _ = run(events)
    # THEN exactly one medium finding names those ten events
    assert [f.rule for f in found] == ["failed_login_burst"]
    assert found[0].severity == "medium"
    assert found[0].log_ids == tuple(e.log_id for e in events)
    assert found[0].first_ms == T0 and found[0].last_ms == T0 + 9 * MINUTE
    assert found[0].details["failures"] == 10 and found[0].details["kind"] == "burst"


def test_one_failure_short_of_the_threshold_does_not_fire() -> None:
    found, _ = run(failures(9))
    assert found == []


def test_n_failures_spread_over_more_than_the_window_do_not_fire() -> None:
    # GIVEN 10 failures 7 minutes apart: any 60-minute window holds at most 9 of them
    found, _ = run(failures(10, step=7 * MINUTE))
    assert found == []


def test_a_long_attack_fires_at_n_then_each_time_its_total_doubles() -> None:
    # GIVEN 85 failures one second apart
    found, state = run(failures(85, step=1000))
    # THEN findings at 10, 20, 40 and 80 failures, not one per failure
    assert [f.details["failures"] for f in found] == [10, 20, 40, 80]
    assert [f.details["kind"] for f in found] == ["burst"] + ["escalation"] * 3
    assert len({f.finding_id for f in found}) == 4
    assert state.burst is not None and state.burst.count == 85


def test_a_new_burst_after_a_quiet_window_fires_again() -> None:
    first = failures(10)
    second = failures(10, start=T0 + 9 * MINUTE + 61 * MINUTE)
    found, _ = run(first + second)
    assert [f.details["kind"] for f in found] == ["burst", "burst"]


def test_a_success_while_a_burst_is_live_fires_once_at_high() -> None:
    # GIVEN a burst, then two successful logins within the window
    events = [*failures(10), login(T0 + 15 * MINUTE), login(T0 + 16 * MINUTE)]
    found, _ = run(
        events, detection_settings=DetectionSettings(rules=frozenset({"failed_login_burst"}))
    )
    # THEN the burst finding and one "success after burst" finding, which names the success
    assert [(f.details["kind"], f.severity) for f in found] == [
        ("burst", "medium"),
        ("success_after_burst", "high"),
    ]
    assert found[1].log_ids[-1] == events[10].log_id


def test_a_success_after_the_burst_ended_does_not_fire() -> None:
    events = [*failures(10), login(T0 + 9 * MINUTE + 61 * MINUTE)]
    found, _ = run(
        events, detection_settings=DetectionSettings(rules=frozenset({"failed_login_burst"}))
    )
    assert [f.details["kind"] for f in found] == ["burst"]


def test_a_failure_delivered_twice_counts_once() -> None:
    # GIVEN 9 failures, then the 9th again in a later run (a repeat the caller should not send)
    events = failures(9)
    _, state = run(events)
    found, state = run([events[-1]], state)
    # THEN it is not the 10th failure
    assert found == [] and len(state.failures) == 9


# -- brute_force_protection, mfa_weakened, credential_change, breached_password -----------------


@pytest.mark.parametrize(
    ("code", "rule", "severity"),
    [
        ("limit_wc", "brute_force_protection", "high"),
        ("limit_sul", "brute_force_protection", "medium"),
        ("limit_mu", "brute_force_protection", "medium"),
        ("gd_otp_rate_limit_exceed", "brute_force_protection", "high"),
        ("gd_unenroll", "mfa_weakened", "high"),
        ("gd_user_delete", "mfa_weakened", "high"),
        ("gd_recovery_succeed", "mfa_weakened", "medium"),
        ("sercft", "mfa_weakened", "medium"),
        ("sce", "credential_change", "high"),
        ("scp", "credential_change", "medium"),
        ("scpn", "credential_change", "medium"),
        ("scpr", "credential_change", "low"),
        ("pwd_leak", "breached_password", "high"),
    ],
)
def test_single_event_rules_fire_on_their_code(code: str, rule: str, severity: str) -> None:
    event = ev(code, T0, ip="192.0.2.1", description="something happened")
    found, _ = run([event])
    assert [(f.rule, f.severity, f.log_ids) for f in found] == [(rule, severity, (event.log_id,))]
    assert found[0].details["ip"] == "192.0.2.1" and found[0].details["code"] == code


@pytest.mark.parametrize(
    "code",
    [
        "ublkdu",
        "gd_enrollment_complete",
        "mfar",
        "gd_start_enroll",
        "fcp",
        "fce",
        "fcpr",
        "scph",
        "s",
        "w",
    ],
)
def test_near_miss_codes_do_not_fire(code: str) -> None:
    # GIVEN a block released, an enrolment, "MFA required", failed credential changes, a hook
    found, _ = run([ev(code, T0, ip="192.0.2.1")])
    assert found == []


def test_repeats_within_the_dedup_window_are_counted_and_reported_with_the_next_finding() -> None:
    # GIVEN three limit_wc within 60 minutes, then one 2 hours later
    events = [ev("limit_wc", T0 + i * MINUTE) for i in range(3)] + [
        ev("limit_wc", T0 + 120 * MINUTE)
    ]
    found, _ = run(events)
    # THEN the first and the last fire; the last says two were suppressed
    assert [f.log_ids[0] for f in found] == [events[0].log_id, events[3].log_id]
    assert found[1].details["suppressed_before"] == 2


def test_a_steady_stream_reports_once_per_window_counted_from_the_last_finding() -> None:
    # GIVEN a breached-password attempt every 30 minutes for three hours
    events = [ev("pwd_leak", T0 + i * 30 * MINUTE) for i in range(7)]
    found, _ = run(events)
    # THEN one finding an hour: the window runs from the last finding, not from the last repeat
    assert [f.first_ms for f in found] == [
        T0,
        T0 + 60 * MINUTE,
        T0 + 120 * MINUTE,
        T0 + 180 * MINUTE,
    ]
    assert [f.details.get("suppressed_before") for f in found] == [None, 1, 1, 1]


def test_dedup_zero_reports_every_event() -> None:
    events = [ev("limit_wc", T0 + i) for i in range(3)]
    found, _ = run(events, detection_settings=DetectionSettings(dedup_ms=0))
    assert len(found) == 3


def test_rules_not_chosen_do_not_fire() -> None:
    only = DetectionSettings(rules=frozenset({"credential_change"}))
    found, _ = run([*failures(10), ev("limit_wc", T0), ev("scp", T0)], detection_settings=only)
    assert [f.rule for f in found] == ["credential_change"]


# -- new_source -------------------------------------------------------------------------------


def test_no_finding_during_warm_up_even_from_many_countries() -> None:
    # GIVEN a user's first five logins, each from a different country
    events = [
        login(T0 + i * DAY, country) for i, country in enumerate(["US", "FR", "JP", "BR", "ZA"])
    ]
    found, state = run(events)
    # THEN nothing fires: they are the baseline
    assert found == [] and state.logins_seen == 5


def test_a_login_from_a_new_country_after_warm_up_fires() -> None:
    baseline = [login(T0 + i * DAY, "US") for i in range(5)]
    new = login(T0 + 6 * DAY, "VN", ip="203.0.113.50")
    found, _ = run([*baseline, new])
    assert [(f.rule, f.severity, f.log_ids) for f in found] == [
        ("new_source", "medium", (new.log_id,))
    ]
    assert found[0].details["new_sources"] == ["country:VN"]
    assert found[0].details["known_sources"] == ["country:US"]


def test_a_login_from_a_known_country_does_not_fire() -> None:
    events = [login(T0 + i * DAY, "US") for i in range(5)] + [login(T0 + 29 * DAY, "US")]
    found, _ = run(events)
    assert found == []


def test_a_country_not_seen_for_more_than_d_days_is_new_again() -> None:
    events = [login(T0 + i * MINUTE, "US") for i in range(4)] + [login(T0 + 5 * MINUTE, "DE")]
    events.append(login(T0 + 5 * MINUTE + 31 * DAY, "US"))
    found, _ = run(events)
    assert [f.details["new_sources"] for f in found] == [["country:US"]]


def test_failed_logins_do_not_make_a_country_known() -> None:
    baseline = [login(T0 + i * DAY, "US") for i in range(5)]
    attacker = ev("fp", T0 + 6 * DAY, ip="203.0.113.5", location_info={"country_code": "RU"})
    found, _ = run([*baseline, attacker, login(T0 + 7 * DAY, "RU")])
    assert [f.rule for f in found] == ["new_source"]


def test_network_sources_when_chosen() -> None:
    by_net = DetectionSettings(new_source_by=("network",), new_source_warmup_logins=1)
    events = [login(T0, None, ip="198.51.100.7"), login(T0 + 1, None, ip="198.51.100.99")]
    events.append(login(T0 + 2, None, ip="2001:db8:1::5"))
    found, _ = run(events, detection_settings=by_net)
    assert [f.details["new_sources"] for f in found] == [["net:2001:db8:1::/48"]]


def test_a_user_hopping_through_new_networks_gets_one_finding_per_window() -> None:
    # GIVEN after warm-up, a login from a fresh network every minute for 90 minutes
    by_net = DetectionSettings(new_source_by=("network",), new_source_warmup_logins=1)
    events = [login(T0, None, ip="198.51.100.7")]
    events += [login(T0 + i * MINUTE, None, ip=f"10.{i}.0.1") for i in range(1, 91)]
    found, state = run(events, detection_settings=by_net)
    # THEN one finding, and one after the hour with the count of those held back
    assert len(found) == 2 and found[1].details["suppressed_before"] == 59
    assert len(state.sources) == 20


def test_equal_dates_still_count_each_failure() -> None:
    events = [ev("fp", T0, log_id=f"id{i:02d}") for i in range(25)]
    found, _ = run(events)
    assert [(f.details["kind"], f.details["failures"]) for f in found] == [
        ("burst", 10),
        ("escalation", 20),
    ]
    assert found[0].log_ids == tuple(f"id{i:02d}" for i in range(10))


def test_an_overlong_log_id_is_named_as_is_in_a_finding_and_as_a_digest_in_state() -> None:
    long_id = "9" * 5000
    found, _ = run([ev("scp", T0, log_id=long_id)])
    assert found[0].log_ids == (long_id,)
    _, state = run([ev("fp", T0, log_id=long_id)])
    assert state.failures[0].log_id.startswith("sha256:") and len(state.failures[0].log_id) == 71


def test_logins_without_location_still_count_towards_warm_up_and_never_fire() -> None:
    events = [login(T0 + i, None) for i in range(10)]
    found, state = run(events)
    assert found == [] and state.logins_seen == 5 and state.sources == ()


# -- admin_action -----------------------------------------------------------------------------


def test_a_management_api_write_by_the_watched_user_fires() -> None:
    found, _ = run([mgmt("sapi", USER)])
    assert [(f.rule, f.severity) for f in found] == [("admin_action", "medium")]
    assert found[0].details["actor_field"] == "details.request.auth.user.user_id"
    assert found[0].details["path"] == "/api/v2/users/x1" and found[0].details["status"] == 200


def test_a_sensitive_write_is_high_and_a_failed_call_is_low() -> None:
    found, _ = run([mgmt("sapi", USER, "delete", "/api/v2/log-streams/lst_01"), mgmt("fapi", USER)])
    assert [f.severity for f in found] == ["high", "low"]


def test_a_call_by_someone_else_or_by_a_machine_client_does_not_fire() -> None:
    # GIVEN an admin acting on the watched user, and a client-credentials call with no user
    someone_else = mgmt("sapi", "auth0|admin")
    machine = mgmt("sapi", {})
    # THEN neither is the watched user's own action
    found, _ = run([someone_else, machine])
    assert found == []
    assert acting_user(machine.raw) == (None, None)


def test_real_management_events_name_their_actor(sample_events: list[dict[str, Any]]) -> None:
    # GIVEN the real sapi events: the actor sits both at the top and under details.request.auth
    sapi = [parse_event(raw) for raw in sample_events if raw.get("type") == "sapi"]
    actor = acting_user(sapi[0].raw)[0]
    assert actor is not None and actor == sapi[0].raw["user_id"]
    # WHEN the rules run for that actor
    found, _ = evaluate(actor, sapi, DetectionState(), DEFAULTS)
    # THEN each distinct operation fires once per dedup window, log streams and clients included
    assert found and all(f.rule == "admin_action" for f in found)
    assert any(f.severity == "high" for f in found)


# -- ids, records, EventBridge ----------------------------------------------------------------


def test_the_same_events_with_the_same_state_give_the_same_ids() -> None:
    events = [*failures(12), ev("limit_wc", T0), mgmt("sapi", USER)]
    first, _ = run(events)
    again, _ = run(list(reversed(events)))
    assert [f.finding_id for f in first] == [f.finding_id for f in again]
    assert len({f.finding_id for f in first}) == len(first)


def test_finding_record_has_only_forwarder_fields() -> None:
    found, _ = run([ev("scp", T0, ip="192.0.2.1")])
    record = finding_record(found[0], tenant="example.eu.auth0.com", detected_at_ms=T0 + 5000)
    assert list(record) == ["_forwarder"]
    body = record["_forwarder"]
    assert body["record_type"] == "finding" and body["format"] == 1
    assert body["watched_user_id"] == USER and body["first_seen"] == "2026-09-21T14:13:20.000Z"
    assert body["detected_at"] == "2026-09-21T14:13:25.000Z"
    json.dumps(record, allow_nan=False)


def test_eventbridge_entry_stays_under_the_limit_with_huge_findings() -> None:
    # GIVEN a finding naming 20,000 events and a 1 MB detail
    finding = Finding(
        finding_id="f" * 32,
        rule="failed_login_burst",
        title="t",
        severity="high",
        user_id=USER,
        log_ids=tuple(f"900{i:053d}" for i in range(20_000)),
        first_ms=T0,
        last_ms=T0,
        details={"blob": "x" * 1_000_000},
    )
    # WHEN it becomes a PutEvents entry
    entry = eventbridge_entry(finding, tenant="t", detected_at_ms=T0, event_bus_name="bus")
    # THEN it fits, lists a capped number of ids, and counts them all
    assert eventbridge_entry_size(entry) <= EVENTBRIDGE_ENTRY_LIMIT
    detail = json.loads(entry["Detail"])
    assert len(detail["log_ids"]) == MAX_EVENTBRIDGE_LOG_IDS and detail["log_id_count"] == 20_000
    assert entry["Source"] == "auth0-user-log-forwarder"
    assert entry["DetailType"] == "Auth0 watched-user finding" and entry["EventBusName"] == "bus"


# -- state ------------------------------------------------------------------------------------


def test_state_round_trips_through_json() -> None:
    events = [*failures(15, step=1000), *[login(T0 + i * DAY, "US") for i in range(6)]]
    events += [ev("limit_wc", T0), mgmt("sapi", USER)]
    _, state = run(events)
    stored = json.loads(json.dumps(state.to_state()))
    assert DetectionState.from_state(stored) == state


@pytest.mark.parametrize(
    "stored",
    [
        None,
        {},
        [],
        "garbage",
        {"v": 0},
        {"v": 99, "fl": "x", "b": [1, 2], "src": {"a": 1}, "dd": [[1, 2, 3]]},
        {"fl": [[1, "id"], [None, "id", None], ["x", 5, 6]], "b": [1, None, 3, True]},
        {"src": [["country:US", "yesterday"], ["country:FR", 5]], "dd": [["k", 5, -1]], "n": "3"},
    ],
)
def test_state_from_older_or_broken_checkpoints_never_raises(stored: object) -> None:
    state = DetectionState.from_state(stored)
    found, after = run([*failures(10), login(T0, "US")], state)
    assert after.to_state()["v"] == 1 and isinstance(found, list)


def test_state_written_with_larger_settings_is_cut_to_the_caps() -> None:
    stored = {
        "fl": [[T0 + i, f"id{i}", "192.0.2.1"] for i in range(500)],
        "src": [[f"country:{i}", T0] for i in range(500)],
        "dd": [[f"k{i}", T0, 0] for i in range(500)],
    }
    state = DetectionState.from_state(stored)
    assert len(json.dumps(state.to_state())) < STATE_BOUND_BYTES


# -- properties -------------------------------------------------------------------------------

CODES = (
    "fp",
    "fu",
    "f",
    "s",
    "s",
    "s",
    "slo",
    "limit_wc",
    "scp",
    "gd_unenroll",
    "sapi",
    "pwd_leak",
)
COUNTRIES = ("US", "US", "US", "DE", "FR", None)


def random_events(rng: random.Random, count: int, *, spread_ms: int) -> list[LogEvent]:
    """Random traffic with equal dates, odd fields, and management calls by the user or others."""
    events = []
    for _ in range(count):
        code = rng.choice(CODES)
        at = T0 + rng.randrange(spread_ms)
        country = rng.choice(COUNTRIES)
        raw: dict[str, Any] = {
            "type": code,
            "ip": rng.choice(["192.0.2.1", "198.51.100.2", "2001:db8::1", None, 7]),
            "location_info": {"country_code": country} if country else None,
            "user_id": USER,
        }
        if code == "sapi":
            actor = rng.choice([USER, "auth0|other"])
            path = rng.choice(["/api/v2/users/u1", "/api/v2/roles/r1", "/api/v2/clients/c9"])
            raw["details"] = {
                "request": {"method": "post", "path": path, "auth": {"user": {"user_id": actor}}}
            }
        log_id = f"900{at:020d}{rng.randrange(10**12):033d}"
        events.append(LogEvent(date_ms=at, log_id=log_id, raw={**raw, "log_id": log_id}))
    return sorted(events, key=lambda e: e.key)


def finding_keys(found: Sequence[Finding]) -> list[tuple[Any, ...]]:
    return [
        (
            f.finding_id,
            f.rule,
            f.severity,
            f.log_ids,
            f.first_ms,
            f.last_ms,
            json.dumps(f.details, sort_keys=True),
        )
        for f in found
    ]


@settings(max_examples=40 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32),
    count=st.integers(1, 40),
    spread=st.sampled_from([10_000, 3_600_000, 40 * DAY]),
    threshold=st.integers(2, 6),
    warmup=st.integers(1, 4),
    by=st.sampled_from([("country",), ("network",), ("country", "network")]),
)
def test_findings_do_not_depend_on_where_runs_split_the_events(
    seed: int, count: int, spread: int, threshold: int, warmup: int, by: tuple[str, ...]
) -> None:
    # GIVEN one user's events, in order, and settings small enough for bursts to happen
    chosen = DetectionSettings(
        failed_login_threshold=threshold,
        new_source_warmup_logins=warmup,
        new_source_by=by,
        dedup_ms=rng_dedup(seed),
    )
    events = random_events(random.Random(seed), count, spread_ms=spread)
    whole, whole_state = evaluate(USER, events, DetectionState(), chosen)
    # WHEN they are split into two runs at every possible point, the state stored as JSON between
    for cut in range(len(events) + 1):
        first, state = evaluate(USER, events[:cut], DetectionState(), chosen)
        state = DetectionState.from_state(json.loads(json.dumps(state.to_state())))
        second, end_state = evaluate(USER, events[cut:], state, chosen)
        # THEN the findings, and the final state, are those of one pass
        assert finding_keys(first + second) == finding_keys(whole), f"cut at {cut}"
        assert end_state == whole_state
    # AND passing the second half again with the state from before it repeats the same ids
    mid = len(events) // 2
    _, before = evaluate(USER, events[:mid], DetectionState(), chosen)
    again_a, _ = evaluate(USER, events[mid:], before, chosen)
    again_b, _ = evaluate(USER, events[mid:], before, chosen)
    assert finding_keys(again_a) == finding_keys(again_b)


def rng_dedup(seed: int) -> int:
    return (0, 60 * MINUTE, 24 * 60 * MINUTE)[seed % 3]


@settings(max_examples=5 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), spread=st.sampled_from([3_600_000, 90 * DAY]))
def test_state_stays_bounded_over_10000_random_events(seed: int, spread: int) -> None:
    # GIVEN the largest settings and 10,000 events with many countries, networks and operations
    rng = random.Random(seed)
    largest = DetectionSettings(
        failed_login_threshold=50, new_source_by=("country", "network"), new_source_warmup_logins=1
    )
    events = []
    for event in random_events(rng, 10_000, spread_ms=spread):
        raw = dict(event.raw)
        raw["ip"] = f"2001:db8:{rng.randrange(0x10000):x}:{rng.randrange(0x10000):x}::1"
        raw["location_info"] = {
            "country_code": f"{rng.choice('ABCDEFGHIJ')}{rng.choice('KLMNOPQRS')}"
        }
        if raw["type"] == "sapi":
            raw["details"]["request"]["path"] = (
                f"/api/v2/{'x' * rng.randrange(300)}/{rng.randrange(99)}"
            )
            raw["details"]["request"]["auth"]["user"]["user_id"] = USER
        events.append(LogEvent(event.date_ms, event.log_id, raw))
    # WHEN they are evaluated in runs of 500
    state = DetectionState()
    for start in range(0, len(events), 500):
        _, state = evaluate(USER, events[start : start + 500], state, largest)
        # THEN the stored state never grows past its bound
        assert len(json.dumps(state.to_state())) < STATE_BOUND_BYTES


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=100 * SCALE, deadline=None)
@given(
    code=st.sampled_from([*CODES, "sapi", "fapi", "mgmt_api_read", "gd_tenant_update", "sercft"])
    | JSON,
    fields=st.dictionaries(
        st.sampled_from(["ip", "details", "location_info", "user_id", "description", "scope"]), JSON
    ),
)
def test_odd_events_never_raise(code: object, fields: dict[str, Any]) -> None:
    events = [ev(code, T0 + i, **fields) for i in range(12)]
    found, state = evaluate(
        USER, events, DetectionState(), DetectionSettings(failed_login_threshold=2)
    )
    json.dumps([finding_record(f, tenant="t", detected_at_ms=T0) for f in found])
    json.dumps(state.to_state())


def test_the_real_sample_events_never_raise(sample_events: list[dict[str, Any]]) -> None:
    # GIVEN the 150 real events, evaluated for each user they name (and for nobody)
    events = [parse_event(raw) for raw in sample_events]
    users = {str(raw.get("user_id")) for raw in sample_events} | {USER}
    for user in sorted(users):
        found, state = evaluate(user, events, DetectionState(), DEFAULTS)
        # THEN every finding is a JSON-able record and the state is small
        for finding in found:
            json.dumps(finding_record(finding, tenant="t", detected_at_ms=T0), allow_nan=False)
        assert len(json.dumps(state.to_state())) < STATE_BOUND_BYTES


# -- settings ---------------------------------------------------------------------------------


def test_settings_defaults() -> None:
    chosen = detection_settings({})
    assert chosen == DetectionSettings()
    assert chosen.rules == frozenset(RULES)
    assert (chosen.failed_login_threshold, chosen.failed_login_window_ms) == (10, 60 * MINUTE)
    assert (chosen.new_source_window_ms, chosen.new_source_warmup_logins) == (30 * DAY, 5)


def test_settings_from_env() -> None:
    chosen = detection_settings(
        {
            "DETECTIONS": "failed_login_burst, NEW_SOURCE",
            "DETECTION_FAILED_LOGIN_THRESHOLD": "5",
            "DETECTION_FAILED_LOGIN_WINDOW_MINUTES": "15",
            "DETECTION_NEW_SOURCE_DAYS": "90",
            "DETECTION_NEW_SOURCE_WARMUP_LOGINS": "3",
            "DETECTION_NEW_SOURCE_BY": "network,country",
            "DETECTION_DEDUP_MINUTES": "0",
        }
    )
    assert chosen.rules == frozenset({"failed_login_burst", "new_source"})
    assert chosen.failed_login_threshold == 5 and chosen.failed_login_window_ms == 15 * MINUTE
    assert chosen.new_source_window_ms == 90 * DAY and chosen.new_source_warmup_logins == 3
    assert chosen.new_source_by == ("country", "network") and chosen.dedup_ms == 0
    assert detection_settings({"DETECTIONS": "none"}).rules == frozenset()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"DETECTIONS": "failed_login_burst,brute_force"}, "brute_force"),
        ({"DETECTIONS": "all,new_source"}, "DETECTIONS"),
        ({"DETECTIONS": "new_source,,admin_action"}, "DETECTIONS"),
        ({"DETECTION_FAILED_LOGIN_THRESHOLD": "1"}, "DETECTION_FAILED_LOGIN_THRESHOLD"),
        ({"DETECTION_FAILED_LOGIN_THRESHOLD": "51"}, "DETECTION_FAILED_LOGIN_THRESHOLD"),
        ({"DETECTION_FAILED_LOGIN_WINDOW_MINUTES": "1h"}, "DETECTION_FAILED_LOGIN_WINDOW_MINUTES"),
        ({"DETECTION_NEW_SOURCE_DAYS": "0"}, "DETECTION_NEW_SOURCE_DAYS"),
        ({"DETECTION_NEW_SOURCE_WARMUP_LOGINS": "-1"}, "DETECTION_NEW_SOURCE_WARMUP_LOGINS"),
        ({"DETECTION_NEW_SOURCE_BY": "asn"}, "DETECTION_NEW_SOURCE_BY"),
        ({"DETECTION_DEDUP_MINUTES": "1441"}, "DETECTION_DEDUP_MINUTES"),
    ],
)
def test_bad_settings_name_the_variable_and_what_it_allows(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        detection_settings(env)
    message = str(caught.value)
    assert named in message
    assert "use" in message or "expected" in message
