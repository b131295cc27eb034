"""Detections: the default pack's rules, run on the Sigma engine, fire on their trigger and not on
its near miss; the plan is tuned by the DETECTION_* settings and cut where its state lives; the
per-user state is small and sound.

The differences from the seven hand-written rules these replace are named in
docs/detections.md ("What changed with Sigma"); the tests that pin one say so.

Properties (hypothesis): splitting one sequence into two runs at any point, with the state stored
as JSON in between, gives exactly the findings of one pass; 10,000 random events keep the state
under its bound; odd events never raise.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from dataclasses import replace
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
    RuleSet,
    default_plan,
    detect,
    finding_record,
    skipped_record,
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
# A user's rules' state at the very most: sigma_step.Limits (1,000 events in all).
STATE_BOUND_BYTES = 96 * 1024

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


def rules_of(chosen: DetectionSettings = DEFAULTS) -> RuleSet:
    return RuleSet.of(default_plan(chosen), tenant_wide=chosen.tenant_wide)


def run(
    events: Sequence[LogEvent],
    state: DetectionState | None = None,
    chosen: DetectionSettings = DEFAULTS,
    user: str = USER,
) -> tuple[list[Finding], DetectionState]:
    found = detect(rules_of(chosen), user, events, state or DetectionState())
    return list(found.findings), found.state


def failures(count: int, start: int = T0, step: int = MINUTE, code: str = "fp") -> list[LogEvent]:
    return [ev(code, start + i * step, ip=f"203.0.113.{i % 250 + 1}") for i in range(count)]


def mgmt(
    code: str,
    actor: object,
    method: str = "patch",
    path: str = "/api/v2/users/x1",
    user_id: str | None = USER,
) -> LogEvent:
    auth: dict[str, Any] = {"strategy": "jwt", "user": actor if isinstance(actor, dict) else {}}
    if isinstance(actor, str):
        auth["user"] = {"user_id": actor, "name": "someone"}
    details = {
        "request": {"method": method, "path": path, "auth": auth, "ip": "192.0.2.9"},
        "response": {"statusCode": 200},
    }
    return LogEvent(
        date_ms=T0,
        log_id=f"900{next(_counter):053d}",
        raw={"type": code, "details": details, "user_id": user_id, "ip": "192.0.2.9"},
    )


# -- the pack --------------------------------------------------------------------------------


def test_every_detection_of_the_pack_is_a_rule_file_and_every_finding_names_one() -> None:
    plan = default_plan(DEFAULTS)
    families = {item.source.removesuffix(".yml") for item in (*plan.rules, *plan.correlations)}
    assert families == set(RULES)
    # Every finding-giving part carries a level and ATT&CK tags; critical is the combinations'
    for correlation in plan.correlations:
        expected = (
            ("critical",) if correlation.kind == "temporal_ordered" else ("low", "medium", "high")
        )
        assert correlation.level in expected, correlation.title
        assert any(tag.startswith("attack.t") for tag in correlation.tags), correlation.title


def test_the_plan_is_cut_where_each_state_lives() -> None:
    # GIVEN the default pack
    rules = rules_of()
    # THEN credential stuffing (grouped by IP) is the shared item's, every other correlation
    # stays within a user, and nothing runs tenant-wide unless asked
    assert rules.shared is not None
    assert [c.name for c in rules.shared.correlations] == ["credential_stuffing"]
    assert "credential_stuffing" not in {c.name for c in rules.per_user.correlations}
    assert all(c.per_user for c in rules.per_user.correlations)
    assert rules.tenant is None
    # AND tenant-wide, the Management API rules (events of whoever makes the call) run on
    # every event, their state the shared item's
    wide = rules_of(replace(DEFAULTS, tenant_wide=True))
    assert wide.tenant is not None
    assert {c.name for c in wide.tenant.correlations} == {
        "admin_action_high",
        "admin_action_medium",
        "admin_action_low",
    }
    assert wide.shared is not None and {c.name for c in wide.shared.correlations} >= {
        "credential_stuffing",
        "admin_action_high",
    }


# -- failed_login_burst -----------------------------------------------------------------------


def test_n_failures_within_the_window_fire_one_burst_finding() -> None:
    # GIVEN 10 failed logins one minute apart (default: 10 within 60 minutes)
    events = failures(10)
    # WHEN the rules run
    found, _ = run(events)
    # THEN exactly one medium finding names those ten events
    assert [f.rule for f in found] == ["failed_login_burst"]
    assert found[0].severity == "medium" and found[0].level == "medium"
    assert found[0].log_ids == tuple(e.log_id for e in events)
    assert found[0].first_ms == T0 and found[0].last_ms == T0 + 9 * MINUTE
    assert found[0].details["count"] == 10 and found[0].details["kind"] == "event_count"
    assert "attack.t1110" in found[0].tags and found[0].rule_id


def test_one_failure_short_of_the_threshold_does_not_fire() -> None:
    found, _ = run(failures(9))
    assert found == []


def test_n_failures_spread_over_more_than_the_window_do_not_fire() -> None:
    # GIVEN 10 failures 7 minutes apart: any 60-minute window holds at most 9 of them
    found, _ = run(failures(10, step=7 * MINUTE))
    assert found == []


def test_a_long_attack_fires_once_per_window_it_lasts() -> None:
    # GIVEN three hours of failures, one every 30 seconds (the hand-written rule fired at 10,
    # 20, 40, 80, ... failures: "What changed with Sigma")
    found, _ = run(failures(360, step=30_000))
    # THEN one finding per 60-minute window
    assert [f.rule for f in found] == ["failed_login_burst"] * 3
    assert len({f.finding_id for f in found}) == 3


def test_a_new_burst_after_a_quiet_window_fires_again() -> None:
    first = failures(10)
    second = failures(10, start=T0 + 9 * MINUTE + 61 * MINUTE)
    found, _ = run(first + second)
    assert [f.rule for f in found] == ["failed_login_burst", "failed_login_burst"]


def test_a_failure_delivered_twice_counts_once() -> None:
    # GIVEN 9 failures, then the 9th again in a later run (a repeat the caller should not send)
    events = failures(9)
    _, state = run(events)
    found, _ = run([events[-1]], state)
    # THEN it is not the 10th failure
    assert found == []


def test_equal_dates_still_count_each_failure() -> None:
    events = [ev("fp", T0, log_id=f"id{i:02d}") for i in range(25)]
    found, _ = run(events)
    # One millisecond is judged once it is all in: one finding, counting all 25
    assert [(f.rule, f.details["count"]) for f in found] == [("failed_login_burst", 25)]


# -- credential_stuffing ----------------------------------------------------------------------


def test_one_ip_failing_for_two_users_is_credential_stuffing_in_the_shared_part() -> None:
    # GIVEN failures of two users from one IP, and of one user from another
    events = [
        ev("fp", T0 + i * MINUTE, ip="203.0.113.9", user_id=f"auth0|u{i % 2}") for i in range(4)
    ]
    events.append(ev("fp", T0, ip="198.51.100.1"))
    rules = rules_of()
    found = detect(rules, USER, events, DetectionState())
    # THEN a user's own rules leave them to the shared item (its state spans users)
    assert found.findings == () and set(found.shared) == set(events)
    # AND there, one finding names the IP and the users counted
    from log_forwarder.sigma_step import CorrelationState, step

    assert rules.shared is not None
    result = step(rules.shared, CorrelationState(), events)
    assert [(f.title, f.group, f.metric) for f in result.findings] == [
        (
            "Failed logins of several watched users from one IP within 60 minutes",
            {"data.ip": "203.0.113.9"},
            2,
        )
    ]


# -- the single-event rules, once per window --------------------------------------------------


@pytest.mark.parametrize(
    ("code", "rule", "severity"),
    [
        ("limit_wc", "brute_force_protection", "high"),
        ("limit_sul", "brute_force_protection", "medium"),
        ("limit_mu", "brute_force_protection", "medium"),
        ("gd_otp_rate_limit_exceed", "brute_force_protection", "high"),
        ("gd_recovery_rate_limit_exceed", "brute_force_protection", "high"),
        ("gd_unenroll", "mfa_weakened", "high"),
        ("gd_user_delete", "mfa_weakened", "high"),
        ("gd_recovery_succeed", "mfa_weakened", "medium"),
        ("sercft", "mfa_weakened", "medium"),
        ("sepkrcft", "mfa_weakened", "medium"),
        ("sce", "credential_change", "high"),
        ("scp", "credential_change", "medium"),
        ("scpn", "credential_change", "medium"),
        ("scu", "credential_change", "low"),
        ("scpr", "credential_change", "low"),
        ("pwd_leak", "breached_password", "high"),
        ("reset_pwd_leak", "breached_password", "medium"),
        ("signup_pwd_leak", "breached_password", "medium"),
    ],
)
def test_single_event_rules_fire_on_their_code(code: str, rule: str, severity: str) -> None:
    event = ev(code, T0, ip="192.0.2.1", description="something happened")
    found, _ = run([event])
    assert [(f.rule, f.severity, f.log_ids) for f in found] == [(rule, severity, (event.log_id,))]


@pytest.mark.parametrize(
    "code",
    ["ublkdu", "gd_enrollment_complete", "mfar", "gd_start_enroll", "fcp", "fce", "fcpr", "scph",
     "s", "w"],
)  # fmt: skip
def test_near_miss_codes_do_not_fire(code: str) -> None:
    # GIVEN a block released, an enrolment, "MFA required", failed credential changes, a hook
    found, _ = run([ev(code, T0, ip="192.0.2.1")])
    assert found == []


def test_repeats_within_the_window_are_folded_into_its_finding() -> None:
    # GIVEN three limit_wc within 60 minutes, then one 2 hours later
    events = [ev("limit_wc", T0 + i * MINUTE) for i in range(3)] + [
        ev("limit_wc", T0 + 120 * MINUTE)
    ]
    found, _ = run(events)
    # THEN the first and the last fire
    assert [f.log_ids[0] for f in found] == [events[0].log_id, events[3].log_id]


def test_a_steady_stream_reports_once_per_window_counted_from_its_finding() -> None:
    # GIVEN a breached-password attempt every 30 minutes for three hours
    events = [ev("pwd_leak", T0 + i * 30 * MINUTE) for i in range(7)]
    found, _ = run(events)
    # THEN a finding opens a window of 60 minutes, both ends in it: the next fires after it
    assert [f.last_ms for f in found] == [T0, T0 + 90 * MINUTE, T0 + 180 * MINUTE]


def test_dedup_zero_reports_every_event() -> None:
    events = [ev("limit_wc", T0 + i) for i in range(3)]
    found, _ = run(events, chosen=replace(DEFAULTS, dedup_ms=0))
    assert len(found) == 3 and {f.details["kind"] for f in found} == {"rule"}


def test_rules_not_chosen_do_not_fire() -> None:
    only = replace(DEFAULTS, rules=frozenset({"credential_change"}))
    found, _ = run([*failures(10), ev("limit_wc", T0), ev("scp", T0)], chosen=only)
    assert [f.rule for f in found] == ["credential_change"]


def test_thresholds_and_windows_are_tuned() -> None:
    tight = replace(DEFAULTS, failed_login_threshold=3, failed_login_window_ms=5 * MINUTE)
    assert [f.rule for f in run(failures(3), chosen=tight)[0]] == ["failed_login_burst"]
    assert run(failures(3, step=3 * MINUTE), chosen=tight)[0] == []


# -- new_source -------------------------------------------------------------------------------


def test_a_login_from_a_second_country_within_the_window_fires() -> None:
    baseline = [login(T0 + i * DAY, "US") for i in range(5)]
    new = login(T0 + 6 * DAY, "VN", ip="203.0.113.50")
    found, _ = run([*baseline, new])
    assert [(f.rule, f.severity, f.log_ids[-1]) for f in found] == [
        ("new_source", "medium", new.log_id)
    ]
    assert found[0].details["count"] == 2


def test_a_login_from_a_known_country_does_not_fire() -> None:
    events = [login(T0 + i * DAY, "US") for i in range(5)] + [login(T0 + 29 * DAY, "US")]
    found, _ = run(events)
    assert found == []


def test_a_new_user_fires_at_its_second_country_there_is_no_warm_up() -> None:
    # "What changed with Sigma": a correlation counts a window, not a user's history
    events = [login(T0, "US"), login(T0 + DAY, "FR")]
    found, _ = run(events)
    assert [f.rule for f in found] == ["new_source"]


def test_failed_logins_do_not_make_a_country_known() -> None:
    baseline = [login(T0 + i * DAY, "US") for i in range(5)]
    attacker = ev("fp", T0 + 6 * DAY, ip="203.0.113.5", location_info={"country_code": "RU"})
    found, _ = run([*baseline, attacker, login(T0 + 7 * DAY, "RU")])
    assert [f.rule for f in found] == ["new_source"]


def test_logins_without_location_never_fire() -> None:
    events = [login(T0 + i, None) for i in range(5)] + [login(T0 + 9, "")]
    found, _ = run(events)
    assert found == []


# -- admin_action -----------------------------------------------------------------------------


def test_a_management_api_write_by_the_watched_user_fires() -> None:
    found, _ = run([mgmt("sapi", USER)])
    assert [(f.rule, f.severity) for f in found] == [("admin_action", "medium")]


def test_a_sensitive_write_is_high_and_a_failed_call_is_low() -> None:
    found, _ = run([mgmt("sapi", USER, "delete", "/api/v2/log-streams/lst_01"), mgmt("fapi", USER)])
    assert sorted(f.severity for f in found) == ["high", "low"]


def test_a_call_by_someone_else_or_by_a_machine_client_does_not_fire() -> None:
    # GIVEN, in the watched user's log, an admin acting on the user, and a client-credentials
    # call that names no user
    someone_else = mgmt("sapi", "auth0|admin")
    machine = mgmt("sapi", {}, user_id=None)
    # THEN neither is the user's own action
    found, _ = run([someone_else, machine])
    assert found == []


def test_guardian_names_its_caller_in_the_subject() -> None:
    event = mgmt("gd_tenant_update", {}, "patch", "/api/tenants/settings")
    raw = dict(event.raw)
    raw["details"]["request"]["auth"] = {"subject": USER, "strategy": "jwt_api2_internal_token"}
    found, _ = run([LogEvent(T0, event.log_id, raw)])
    assert [(f.rule, f.severity) for f in found] == [("admin_action", "high")]


def test_real_management_events_fire_for_their_actor(sample_events: list[dict[str, Any]]) -> None:
    # GIVEN the real sapi events: the actor sits both at the top and under details.request.auth
    sapi = [parse_event(raw) for raw in sample_events if raw.get("type") == "sapi"]
    actor = sapi[0].raw["user_id"]
    # WHEN the rules run for that actor
    found, _ = run(sapi, user=actor)
    # THEN each distinct operation fires once per window, log streams and clients included
    assert found and all(f.rule == "admin_action" for f in found)
    assert any(f.severity == "high" for f in found)


# -- mfa_removed_then_recovery_changed --------------------------------------------------------

SEQUENCE = "mfa_removed_then_recovery_changed"


def sequence_findings(events: Sequence[LogEvent]) -> list[Finding]:
    return [f for f in run(events)[0] if f.rule == SEQUENCE]


@pytest.mark.parametrize("removed", ["gd_unenroll", "gd_user_delete"])
@pytest.mark.parametrize("changed", ["sce", "scpn"])
def test_a_factor_removed_then_the_recovery_changed_within_the_hour_is_critical(
    removed: str, changed: str
) -> None:
    # GIVEN a second factor removed, then the email (or phone) changed 59 minutes later
    events = [ev(removed, T0), ev(changed, T0 + 59 * MINUTE)]
    # THEN one critical finding names both, beside each step's own finding
    (found,) = sequence_findings(events)
    assert (found.severity, found.details["kind"]) == ("critical", "temporal_ordered")
    assert found.log_ids == tuple(e.log_id for e in events)
    assert {f.rule for f in run(events)[0]} == {
        SEQUENCE,
        "mfa_weakened",
        "credential_change",
    }


def test_the_sequence_needs_its_order_its_hour_and_one_user() -> None:
    # the other order; more than 60 minutes apart; the same millisecond (strictly later each)
    assert sequence_findings([ev("sce", T0), ev("gd_unenroll", T0 + MINUTE)]) == []
    assert sequence_findings([ev("gd_unenroll", T0), ev("sce", T0 + 61 * MINUTE)]) == []
    assert sequence_findings([ev("gd_unenroll", T0), ev("sce", T0)]) == []
    # a password change is not a move of the recovery
    assert sequence_findings([ev("gd_unenroll", T0), ev("scp", T0 + MINUTE)]) == []


def test_the_sequence_spans_runs_through_the_stored_state_once() -> None:
    # GIVEN the removal in one run, its state stored as JSON, the change in the next run
    removal, change = ev("gd_unenroll", T0), ev("sce", T0 + 20 * MINUTE)
    _, state = run([removal])
    stored = DetectionState.from_state(json.loads(json.dumps(state.to_state())))
    # WHEN the second run is replayed from that state (a crash before its commit)
    first, _ = run([change], stored)
    again, after = run([change], stored)
    # THEN both give the one finding, with the same id; and after it, a repeat gives none
    ours = [[f.finding_id for f in found if f.rule == SEQUENCE] for found in (first, again)]
    assert ours[0] == ours[1] and len(ours[0]) == 1
    assert [f for f in run([change], after)[0] if f.rule == SEQUENCE] == []


# -- ids, records, EventBridge ----------------------------------------------------------------


def test_the_same_events_with_the_same_state_give_the_same_ids() -> None:
    events = [*failures(12), ev("limit_wc", T0), mgmt("sapi", USER)]
    first, _ = run(events)
    again, _ = run(list(reversed(events)))
    assert [f.finding_id for f in first] == [f.finding_id for f in again]
    assert len({f.finding_id for f in first}) == len(first) == 3


def test_finding_record_has_only_forwarder_fields() -> None:
    found, _ = run([ev("scp", T0, ip="192.0.2.1")])
    record = finding_record(found[0], tenant="example.eu.auth0.com", detected_at_ms=T0 + 5000)
    assert list(record) == ["_forwarder"]
    body = record["_forwarder"]
    assert body["record_type"] == "finding" and body["format"] == 1
    assert body["watched_user_id"] == USER and body["first_seen"] == "2026-09-21T14:13:20.000Z"
    assert body["detected_at"] == "2026-09-21T14:13:25.000Z"
    assert body["rule_id"] == "d4d9de29-3647-4a02-892e-bb967d55bf29" and body["level"] == "medium"
    assert body["tags"] == ["attack.persistence", "attack.t1098"]
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


def test_an_overlong_log_id_is_kept_as_a_digest() -> None:
    long_id = "9" * 5000
    found, state = run([ev("scp", T0, log_id=long_id)])
    assert found[0].log_ids[0].startswith("sha256:") and len(found[0].log_ids[0]) == 71
    assert long_id not in json.dumps(state.to_state())


# -- what the rules did not see whole ---------------------------------------------------------


def test_a_failure_too_late_for_its_window_is_said_not_counted() -> None:
    # GIVEN a user's state past a failure's window, then that failure arriving late
    _, state = run([login(T0 + 3 * 60 * MINUTE, "US"), *failures(2, start=T0 + 3 * 60 * MINUTE)])
    late = ev("fp", T0)
    found = detect(rules_of(), USER, [late], state)
    # THEN it is a record (too late for failed_login_burst, and for success_after_burst's
    # count of the same failures), not a count
    assert found.findings == ()
    assert sorted((s.rule, s.reason, s.log_ids) for s in found.skipped) == [
        ("failed_login_burst", "too_late", (late.log_id,)),
        ("success_after_burst", "too_late", (late.log_id,)),
    ]
    record = skipped_record(found.skipped[0], tenant="t", watched_user_id=USER, detected_at_ms=T0)
    body = record["_forwarder"]
    assert body["record_type"] == "detection_skipped" and body["events"] == 1


def test_an_event_without_a_group_by_value_is_said_not_counted() -> None:
    found = detect(rules_of(), USER, [ev("limit_wc", T0, user_id=None)], DetectionState())
    assert found.findings == ()
    assert [(s.rule, s.reason) for s in found.skipped] == [
        ("brute_force_protection", "no_group_key")
    ]


# -- state ------------------------------------------------------------------------------------


def test_state_round_trips_through_json() -> None:
    events = [*failures(15, step=1000), *[login(T0 + i * DAY, "US") for i in range(6)]]
    events += [ev("limit_wc", T0), mgmt("sapi", USER)]
    _, state = run(events)
    stored = json.loads(json.dumps(state.to_state()))
    assert DetectionState.from_state(stored) == state
    assert stored["written_v"] == 2 and stored["v"] == 1


@pytest.mark.parametrize(
    "stored",
    [
        None,
        {},
        [],
        "garbage",
        {"v": 0},
        {"v": 1, "written_v": 2, "c": "x"},
        {"v": 1, "written_v": 2, "c": {"v": 1, "wm": "x", "c": {"k": {"e": [[1, 2]]}}}},
        {"fl": [[1, "id"], [None, "id", None], ["x", 5, 6]], "b": [1, None, 3, True]},
    ],
)
def test_state_from_older_or_broken_checkpoints_never_raises(stored: object) -> None:
    state = DetectionState.from_state(stored)
    found, after = run([*failures(10), login(T0, "US")], state)
    assert after.to_state()["written_v"] == 2 and [f.rule for f in found] == ["failed_login_burst"]


def test_a_state_of_the_hand_written_rules_starts_afresh() -> None:
    # GIVEN what v1 kept: 9 failures of a burst under way, known countries
    v1 = {
        "v": 1,
        "fl": [[T0 + i, f"id{i}", "192.0.2.1"] for i in range(9)],
        "lf": T0 + 8,
        "n": 5,
        "src": [["country:US", T0]],
        "dd": [],
    }
    # THEN it reads as an empty state (docs/detections.md, "Upgrading"): the 10th failure is
    # the first one counted
    state = DetectionState.from_state(v1)
    assert state == DetectionState()
    assert run([ev("fp", T0 + 9)], state)[0] == []


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
        (f.finding_id, f.rule, f.severity, f.log_ids, f.first_ms, f.last_ms,
         json.dumps(f.details, sort_keys=True))
        for f in found
    ]  # fmt: skip


@settings(max_examples=40 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32),
    count=st.integers(1, 40),
    spread=st.sampled_from([10_000, 3_600_000, 40 * DAY]),
    threshold=st.integers(2, 6),
    dedup=st.sampled_from([0, 60 * MINUTE, 24 * 60 * MINUTE]),
)
def test_findings_do_not_depend_on_where_runs_split_the_events(
    seed: int, count: int, spread: int, threshold: int, dedup: int
) -> None:
    # GIVEN one user's events, in order, and settings small enough for bursts to happen
    chosen = replace(DEFAULTS, failed_login_threshold=threshold, dedup_ms=dedup)
    events = random_events(random.Random(seed), count, spread_ms=spread)
    whole, whole_state = run(events, chosen=chosen)
    # WHEN they are split into two runs at every possible point, the state stored as JSON between
    for cut in range(len(events) + 1):
        first, state = run(events[:cut], chosen=chosen)
        state = DetectionState.from_state(json.loads(json.dumps(state.to_state())))
        second, end_state = run(events[cut:], state, chosen=chosen)
        # THEN the findings, and the final state, are those of one pass
        assert finding_keys(first + second) == finding_keys(whole), f"cut at {cut}"
        assert end_state == whole_state
    # AND passing the second half again with the state from before it repeats the same ids
    mid = len(events) // 2
    _, before = run(events[:mid], chosen=chosen)
    assert finding_keys(run(events[mid:], before, chosen=chosen)[0]) == finding_keys(
        run(events[mid:], before, chosen=chosen)[0]
    )


@settings(max_examples=5 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), spread=st.sampled_from([3_600_000, 90 * DAY]))
def test_state_stays_bounded_over_10000_random_events(seed: int, spread: int) -> None:
    # GIVEN 10,000 events with many countries, types and operations
    rng = random.Random(seed)
    events = []
    for event in random_events(rng, 10_000, spread_ms=spread):
        raw = dict(event.raw)
        raw["type"] = rng.choice([*CODES, "sce", "scpn", "limit_mu", "fapi", "sercft"])
        raw["location_info"] = {
            "country_code": f"{rng.choice('ABCDEFGHIJ')}{rng.choice('KLMNOPQRS')}"
        }
        if raw["type"] in ("sapi", "fapi"):
            path = f"/api/v2/{'x' * rng.randrange(300)}/{rng.randrange(99)}"
            auth = {"user": {"user_id": USER}}
            raw["details"] = {"request": {"method": "post", "path": path, "auth": auth}}
        events.append(LogEvent(event.date_ms, event.log_id, raw))
    # WHEN they are evaluated in runs of 500
    state = DetectionState()
    for start in range(0, len(events), 500):
        _, state = run(events[start : start + 500], state)
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
    found, state = run(events, chosen=replace(DEFAULTS, failed_login_threshold=2))
    json.dumps([finding_record(f, tenant="t", detected_at_ms=T0) for f in found])
    json.dumps(state.to_state())


def test_the_real_sample_events_never_raise(sample_events: list[dict[str, Any]]) -> None:
    # GIVEN the 150 real events, evaluated for each user they name (and for nobody)
    events = [parse_event(raw) for raw in sample_events]
    users = {str(raw.get("user_id")) for raw in sample_events} | {USER}
    for user in sorted(users):
        found, state = run(events, user=user)
        # THEN every finding is a JSON-able record and the state is small
        for finding in found:
            json.dumps(finding_record(finding, tenant="t", detected_at_ms=T0), allow_nan=False)
        assert len(json.dumps(state.to_state())) < STATE_BOUND_BYTES


# -- settings ---------------------------------------------------------------------------------


def test_settings_defaults() -> None:
    chosen = detection_settings({})
    assert chosen == DetectionSettings()
    assert chosen.rules == frozenset(RULES) and not chosen.tenant_wide
    assert (chosen.failed_login_threshold, chosen.failed_login_window_ms) == (10, 60 * MINUTE)
    assert (chosen.new_source_window_ms, chosen.dedup_ms) == (30 * DAY, 60 * MINUTE)


def test_settings_from_env() -> None:
    chosen = detection_settings(
        {
            "DETECTIONS": "failed_login_burst, NEW_SOURCE",
            "DETECTION_FAILED_LOGIN_THRESHOLD": "5",
            "DETECTION_FAILED_LOGIN_WINDOW_MINUTES": "15",
            "DETECTION_NEW_SOURCE_DAYS": "90",
            "DETECTION_NEW_SOURCE_BY": "country",
            "DETECTION_DEDUP_MINUTES": "0",
            "DETECTIONS_TENANT_WIDE": "true",
        }
    )
    assert chosen.rules == frozenset({"failed_login_burst", "new_source"})
    assert chosen.failed_login_threshold == 5 and chosen.failed_login_window_ms == 15 * MINUTE
    assert chosen.new_source_window_ms == 90 * DAY and chosen.dedup_ms == 0
    assert chosen.tenant_wide
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
        ({"DETECTION_NEW_SOURCE_WARMUP_LOGINS": "5"}, "DETECTION_NEW_SOURCE_WARMUP_LOGINS"),
        ({"DETECTION_NEW_SOURCE_BY": "network"}, "DETECTION_NEW_SOURCE_BY"),
        ({"DETECTION_DEDUP_MINUTES": "1441"}, "DETECTION_DEDUP_MINUTES"),
        ({"DETECTIONS_TENANT_WIDE": "yes"}, "DETECTIONS_TENANT_WIDE"),
    ],
)
def test_bad_settings_name_the_variable_and_what_it_allows(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        detection_settings(env)
    message = str(caught.value)
    assert named in message
    assert "use" in message or "expected" in message or "unset" in message


# -- where the plan comes from ----------------------------------------------------------------

PROVIDER_ENV = {
    "AUTH0_DOMAIN": "acme.eu.auth0.com",
    "AUTH0_CREDENTIALS_SECRET": "auth0-user-log-forwarder/management-api",
    "CHECKPOINT_TABLE": "checkpoints",
    "WATCHED_USER_IDS": "auth0|a",
    "DESTINATIONS": "s3",
    "S3_BUCKET": "bucket",
}


def test_the_detection_path_takes_its_plan_from_the_rule_packs_provider() -> None:
    import boto3

    from log_forwarder.config import Settings
    from log_forwarder.retry import UNLIMITED, Deadline
    from log_forwarder.rule_packs import StoredPacks
    from log_forwarder.runtime import Overrides, build_runtime

    class NoPacks:
        def __init__(self) -> None:
            self.deadlines: list[object] = []

        def read(self, deadline: object = None) -> StoredPacks:
            self.deadlines.append(deadline)
            return StoredPacks()

    session = boto3.session.Session(region_name="eu-west-1")
    # GIVEN no rule packs table: the provider is the shipped default pack, tuned
    settings = Settings.from_env({**PROVIDER_ENV, "DETECTION_FAILED_LOGIN_THRESHOLD": "3"})
    runtime = build_runtime(settings, session=session)
    assert runtime.rule_packs is not None
    active = runtime.rule_packs.active()
    assert active.packs == ("default",)
    burst = next(c for c in active.plan.correlations if c.name == "failed_login_burst")
    assert burst.conditions == (("gte", 3),)
    # AND the forwarder's detections read that same provider: one source, the same Plan object
    detections = runtime.forwarder._env.output.detections
    assert detections is not None and detections.rules(UNLIMITED).plan is active.plan
    # AND with packs installed somewhere (a store given), still that one provider
    store, now = NoPacks(), [1_000.0]
    installed = build_runtime(
        settings, session=session, clock=lambda: now[0], overrides=Overrides(rule_packs=store)
    )
    assert installed.rule_packs is not None
    installed_detections = installed.forwarder._env.output.detections
    assert installed_detections is not None
    assert installed_detections.plans == installed.rule_packs.plan
    # AND a read of the store in the middle of a run (the max age passed) keeps to its deadline
    run_deadline = Deadline(lambda: 5_000)
    installed_detections.rules(run_deadline)
    now[0] += settings.rule_packs_max_age_s + 1
    installed_detections.rules(run_deadline)
    assert store.deadlines == [run_deadline, run_deadline]
    # AND with DETECTIONS=none there is no provider and no detection path
    off = build_runtime(Settings.from_env({**PROVIDER_ENV, "DETECTIONS": "none"}), session=session)
    assert off.rule_packs is None and off.forwarder._env.output.detections is None
