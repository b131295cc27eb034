"""The output options end to end, through the handler: OCSF events, filters, pseudonyms."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devtools.auth0_simulator import Auth0Simulator
from devtools.harness import LocalDeployment
from devtools.local_aws import LocalAws
from devtools.traffic import generate_user_events
from log_forwarder.filters import CATEGORIES
from log_forwarder.ocsf import DETECTION_FINDING
from tests.unit.test_ocsf import validate_ocsf

pytestmark = pytest.mark.integration
USERS = ("auth0|opt-a", "google-oauth2|opt b/c")
KEY = "k3y-for-pseudonyms-not-a-real-one-0123456789"


def seed(
    sim: Auth0Simulator, count: int = 80, seed: int = 1, hours: float = 6
) -> dict[str, list[dict[str, Any]]]:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    return {
        user: sim.add_events(
            generate_user_events(
                user, count=count, start=now - timedelta(hours=hours), end=now, rng=rng
            )
        )
        for user in USERS
    }


def deploy(aws: LocalAws, sim: Auth0Simulator, **env: str) -> LocalDeployment:
    return LocalDeployment(
        aws,
        sim,
        stack_name=f"opt{time.time_ns() % 10**9}",
        watched_user_ids=USERS,
        AUTH0_RATE_LIMIT_PER_SECOND="400",
        **env,
    )


def events_in(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Event lines (not the forwarder's own records: an OCSF Detection Finding is one), in
    either format."""
    return [
        r
        for r in records
        if "log_id" in r or r.get("class_uid", DETECTION_FINDING) != DETECTION_FINDING
    ]


def test_ocsf_output_is_valid_ocsf_once_per_event(aws: LocalAws, sim: Auth0Simulator) -> None:
    # GIVEN realistic traffic and OUTPUT_FORMAT=ocsf
    seeded = seed(sim)
    stack = deploy(aws, sim, OUTPUT_FORMAT="ocsf")
    # WHEN the function runs
    assert stack.invoke().error is None
    # THEN every event line in each destination is a valid OCSF event, one per Auth0 event,
    # keeping the Auth0 event whole in raw_data
    for user, events in seeded.items():
        for records in (stack.cloudwatch_records(user), stack.s3_records(user)):
            lines = events_in(records)
            for line in lines:
                line.pop("@timestamp", None)
                validate_ocsf(line, corpus="end to end (OUTPUT_FORMAT=ocsf)")
            uids = Counter(line["metadata"]["uid"] for line in lines)
            assert uids == Counter(e["log_id"] for e in events)
            originals = {e["log_id"]: e for e in events}
            for line in lines:
                assert json.loads(line["raw_data"]) == originals[line["metadata"]["uid"]]


def test_excluded_events_are_not_written_but_move_the_checkpoint(
    aws: LocalAws, sim: Auth0Simulator
) -> None:
    # GIVEN a filter that keeps successful logins and Management API reads and writes out
    seeded = seed(sim)
    excluded = CATEGORIES["auth.login.success"] | CATEGORIES["management.success"]
    stack = deploy(aws, sim, EVENTS_EXCLUDE="auth.login.success,management.success")
    # WHEN the function runs twice, new events arriving in between
    first = stack.invoke()
    later = seed(sim, count=20, seed=2, hours=0.01)
    second = stack.invoke()
    assert first.error is None and second.error is None
    # THEN only the other events are written, each once, and the excluded ones are counted
    for user in USERS:
        everything = seeded[user] + later[user]
        kept = [e["log_id"] for e in everything if e["type"] not in excluded]
        left_out = [e for e in everything if e["type"] in excluded]
        assert left_out, "the traffic exercises the filter"
        for records in (stack.cloudwatch_records(user), stack.s3_records(user)):
            assert Counter(r["log_id"] for r in events_in(records)) == Counter(kept)
    filtered = first.metrics()["EventsFiltered"] + second.metrics()["EventsFiltered"]
    assert filtered == sum(
        e["type"] in excluded for user in USERS for e in seeded[user] + later[user]
    )
    # AND nothing is read as new again: the checkpoint moved past the excluded events too
    third = stack.invoke()
    assert third.metrics()["EventsFiltered"] == 0 and third.metrics()["EventsForwarded"] == 0


def test_chosen_fields_become_keyed_pseudonyms_that_still_correlate(
    aws: LocalAws, sim: Auth0Simulator
) -> None:
    # GIVEN pseudonyms for ip, user_name and the city, keyed by a secret in Secrets Manager
    seeded = seed(sim)
    secrets = aws.client("secretsmanager")
    name = f"pii-key-{time.time_ns()}"
    secrets.create_secret(Name=name, SecretString=json.dumps({"key": KEY}))
    stack = deploy(aws, sim, PII_FIELDS="ip,user_name,location_info.city_name", PII_KEY_SECRET=name)
    # WHEN the function runs
    invocation = stack.invoke()
    assert invocation.error is None
    # THEN those fields are pseudonyms, equal values give equal pseudonyms, the rest is untouched
    for user, events in seeded.items():
        originals = {e["log_id"]: e for e in events}
        pseudonym_of: dict[str, str] = {}
        for record in events_in(stack.s3_records(user)):
            original = originals[record["log_id"]]
            for field in ("ip", "user_name"):
                if original.get(field) is not None:
                    assert record[field].startswith("hmac-sha256:")
                    assert record[field] != original[field]
                    assert pseudonym_of.setdefault(original[field], record[field]) == record[field]
            city = (original.get("location_info") or {}).get("city_name")
            if city is not None:
                assert record["location_info"]["city_name"].startswith("hmac-sha256:")
                assert (
                    record["location_info"]["country_code"]
                    == original["location_info"]["country_code"]
                )
            assert record["user_agent"] == original["user_agent"]
            assert record["date"] == original["date"] and record["type"] == original["type"]
        assert len(set(pseudonym_of.values())) == len(pseudonym_of)  # no two values collide
    # AND the key is nowhere in what the function printed
    assert KEY not in invocation.output


def test_pseudonyms_without_a_key_are_a_configuration_error(
    aws: LocalAws, sim: Auth0Simulator
) -> None:
    seed(sim, count=3)
    stack = deploy(aws, sim, PII_FIELDS="ip")
    invocation = stack.invoke(cold=True)
    assert invocation.error is not None
    assert "PII_FIELDS needs PII_KEY_SECRET" in str(invocation.error)
