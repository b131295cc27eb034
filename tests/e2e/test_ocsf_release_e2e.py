"""The OCSF release the operator picks (`OCSF_VERSION`), end to end through the template's handler:
each destination holds events that release accepts, and an unknown release stops the run."""

from __future__ import annotations

from collections import Counter

import pytest

from devtools.auth0_simulator import Auth0Simulator
from devtools.harness import LocalDeployment
from devtools.local_aws import LocalAws
from log_forwarder.exceptions import ConfigError
from log_forwarder.ocsf import DETECTION_FINDING
from tests.e2e.conftest import stack_name
from tests.e2e.test_output_options import deploy, events_in, seed
from tests.unit.test_ocsf import validate_ocsf

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("release", ["1.5.0", "1.8.0"])
def test_each_release_is_written_as_that_release_accepts_it(
    aws: LocalAws, sim: Auth0Simulator, release: str
) -> None:
    # GIVEN realistic traffic (Management API PATCHes among it) and the chosen release
    seeded = seed(sim, count=120, seed=4)
    stack = deploy(aws, sim, OUTPUT_FORMAT="ocsf", OCSF_VERSION=release)
    # WHEN the function runs
    assert stack.invoke().error is None
    # THEN every event line says that release and is valid against it, once per Auth0 event
    methods: Counter[object] = Counter()
    findings = 0
    for user, events in seeded.items():
        for records in (stack.cloudwatch_records(user), stack.s3_records(user)):
            # AND the rules' findings are Detection Findings (2004) that release accepts
            for finding in (r for r in records if r.get("class_uid") == DETECTION_FINDING):
                finding.pop("@timestamp", None)
                assert finding["metadata"]["version"] == release
                validate_ocsf(finding, corpus="end to end (OCSF_VERSION), findings")
                assert finding["finding_info"]["analytic"]["uid"]
                assert finding["finding_info"]["related_events"]
                findings += 1
            lines = events_in(records)
            for line in lines:
                line.pop("@timestamp", None)
                assert line["metadata"]["version"] == release
                validate_ocsf(line, corpus="end to end (OCSF_VERSION)")
                if line["class_uid"] == 6003:
                    methods[line["http_request"].get("http_method")] += 1
            assert Counter(x["metadata"]["uid"] for x in lines) == Counter(
                e["log_id"] for e in events
            )
    assert findings > 0
    # AND a PATCH is http_method PATCH only where the release defines it
    assert methods["GET"] > 0
    assert (methods["PATCH"] > 0, methods[None] > 0) == (
        (True, False) if release == "1.8.0" else (False, True)
    )


def test_an_unknown_release_stops_the_run_before_anything_is_written(
    aws: LocalAws, sim: Auth0Simulator
) -> None:
    seeded = seed(sim, count=10)
    stack = deploy(aws, sim, OUTPUT_FORMAT="ocsf", OCSF_VERSION="1.9.0")
    invocation = stack.invoke()
    assert isinstance(invocation.error, ConfigError)
    assert "OCSF_VERSION='1.9.0' is not allowed" in str(invocation.error)
    assert all(stack.cloudwatch_records(user) == [] for user in seeded)


def test_an_event_holding_numbers_no_float_holds_is_delivered_and_the_user_goes_on(
    aws: LocalAws, sim: Auth0Simulator
) -> None:
    # GIVEN a user with a login whose latitude is 10**400 (valid JSON: a Python int, too large
    # for a float) and a Management API call whose statusCode is 10**20, then a later login, and
    # a neighbour (issue #21's review: OverflowError on every run, the user's later events never
    # delivered)
    from datetime import UTC, datetime, timedelta

    user, neighbour = "auth0|hostile-number", "auth0|neighbour"

    def event(who: str, seconds_ago: int, **extra: object) -> dict[str, object]:
        when = (datetime.now(UTC) - timedelta(seconds=seconds_ago)).isoformat(
            timespec="milliseconds"
        )
        return {"date": when.replace("+00:00", "Z"), "type": "s", "user_id": who, "ip": "1.2.3.4",
                "description": "login", **extra}  # fmt: skip

    hostile = [
        event(user, 90, location_info={"city_name": "X", "country_code": "FR",
                                       "latitude": 10**400, "longitude": 2}),
        event(user, 80, type="sapi", details={"response": {"statusCode": 10**20}}),
    ]  # fmt: skip
    events = sim.add_events([event(neighbour, 120), event(user, 100), *hostile, event(user, 60)])
    stack = LocalDeployment(
        aws, sim, stack_name=stack_name("num"), watched_user_ids=[user, neighbour],
        OUTPUT_FORMAT="ocsf", READ_MODE="per-user",
    )  # fmt: skip
    # WHEN the function runs
    invocation = stack.invoke()
    # THEN nothing failed, and each destination holds every event once, each valid OCSF, the
    # numbers refused by the mapping (no lat, no response code), kept whole in raw_data
    assert invocation.error is None, invocation.error
    for who in (user, neighbour):
        expected = Counter(str(e["log_id"]) for e in events if e["user_id"] == who)
        for records in (stack.cloudwatch_records(who), stack.s3_records(who)):
            lines = events_in(records)
            for line in lines:
                line.pop("@timestamp", None)
                validate_ocsf(line)
            assert Counter(x["metadata"]["uid"] for x in lines) == expected
            by_id = {x["metadata"]["uid"]: x for x in lines}
            if who == user:
                login = by_id[events[2]["log_id"]]
                assert "lat" not in login["src_endpoint"]["location"]
                assert '"latitude":1' + "0" * 400 in login["raw_data"]
                assert "response" not in by_id[events[3]["log_id"]]["api"]
