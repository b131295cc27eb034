"""The OCSF release the operator picks (`OCSF_VERSION`), end to end through the template's handler:
each destination holds events that release accepts, and an unknown release stops the run."""

from __future__ import annotations

from collections import Counter

import pytest

from devtools.auth0_simulator import Auth0Simulator
from devtools.local_aws import LocalAws
from log_forwarder.exceptions import ConfigError
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
    for user, events in seeded.items():
        for records in (stack.cloudwatch_records(user), stack.s3_records(user)):
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
