"""Configuration: read once, validated, and every error names the variable and what it accepts."""

from __future__ import annotations

import pytest

from log_forwarder.config import Settings, parse_start_from
from log_forwarder.exceptions import ConfigError

BASE = {
    "AUTH0_DOMAIN": "example.eu.auth0.com",
    "AUTH0_CREDENTIALS_SECRET": "auth0/m2m",
    "CHECKPOINT_TABLE": "checkpoints",
    "DESTINATIONS": "cloudwatch,s3",
    "LOG_GROUP_NAME": "/auth0/users",
    "S3_BUCKET": "bucket",
}


def settings(**changes: str | None) -> Settings:
    env = {**BASE, **changes}
    return Settings.from_env({k: v for k, v in env.items() if v is not None})


def test_defaults_for_a_minimal_deployment() -> None:
    s = settings()
    assert s.auth0_base_url == "https://example.eu.auth0.com"
    assert s.destinations == ("cloudwatch", "s3")
    assert s.setting("S3_PREFIX") == "auth0-logs/"
    assert s.start_from.mode == "earliest"
    assert s.overlap_window_ms == 600_000
    assert s.rate_limit_share == 0.5
    assert s.rate_limit_per_second is None  # learned from Auth0's headers
    assert s.watched_user_ids is None
    assert s.read_mode == "auto"


@pytest.mark.parametrize("mode", ["auto", "per-user", "stream", " Stream "])
def test_read_mode_accepts_its_three_values(mode: str) -> None:
    assert settings(READ_MODE=mode).read_mode == mode.strip().lower()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, None), ("", None), (" ", None), ("0", None), ("0.0", None), ("16", 16.0), ("1.5", 1.5)],
)
def test_the_rate_limit_is_an_optional_cap(raw: str | None, expected: float | None) -> None:
    # Unset, empty or 0 (the template's default) mean "learn it"; any other value caps it.
    assert settings(AUTH0_RATE_LIMIT_PER_SECOND=raw).rate_limit_per_second == expected


def test_watch_list_keeps_order_and_drops_repeats_and_odd_characters_survive() -> None:
    s = settings(WATCHED_USER_IDS="auth0|a/b,samlp|conn|x y@z=1,auth0|a/b")
    assert s.watched_user_ids == ("auth0|a/b", "samlp|conn|x y@z=1")


@pytest.mark.parametrize(
    ("value", "entry", "said"),
    [
        ("auth0|a;auth0|b", "'auth0|a;auth0|b'", "';'"),
        ('["auth0|a","auth0|b"]', "'[\"auth0|a\"'", "'['"),
        ("auth0|a, auth0|b", "' auth0|b'", "starts or ends with a space"),
        ("auth0|a ,auth0|b", "'auth0|a '", "starts or ends with a space"),
        ("'auth0|a'", "\"'auth0|a'\"", '"\'"'),
        ("auth0|a\n", "'auth0|a\\n'", "starts or ends with a space"),
        ("auth0|a,,auth0|b", "", "empty entry"),
    ],
)
def test_a_mistyped_watch_list_is_refused_naming_the_entry(
    value: str, entry: str, said: str
) -> None:
    # GIVEN a list typed in another syntax (semicolons, JSON, spaces after commas, quotes)
    # WHEN the settings are read / THEN the error names the variable, the entry and the fix
    with pytest.raises(ConfigError) as error:
        settings(WATCHED_USER_IDS=value)
    message = str(error.value)
    assert message.startswith("WATCHED_USER_IDS")
    assert entry in message
    assert said in message
    assert "comma-separated user ids" in message


def test_the_cli_reads_auth0_settings_without_any_aws_variable() -> None:
    # GIVEN only what `check` and `run --local` need: a tenant and local credentials, and a
    # local Auth0 (the simulator) with no AWS endpoint: nothing will be written to AWS
    env = {
        "AUTH0_DOMAIN": "example.eu.auth0.com",
        "AUTH0_BASE_URL": "http://127.0.0.1:8080",
        "AUTH0_CLIENT_ID": "id",
        "AUTH0_CLIENT_SECRET": "secret",
    }
    # WHEN read without AWS / THEN no table, destination or endpoint is required
    s = Settings.from_env(env, aws=False)
    assert (s.destinations, s.checkpoint_table, s.watch_table) == ((), "", None)
    # AND the function's own reading still refuses the same environment
    with pytest.raises(ConfigError, match="AWS_ENDPOINT_URL is not set"):
        Settings.from_env({**env, "CHECKPOINT_TABLE": "t", "DESTINATIONS": "s3", "S3_BUCKET": "b"})


@pytest.mark.parametrize(
    ("changes", "names"),
    [
        ({"AUTH0_DOMAIN": None}, "AUTH0_DOMAIN"),
        ({"AUTH0_DOMAIN": "https://x.auth0.com/"}, "AUTH0_DOMAIN"),
        ({"AUTH0_BASE_URL": "ftp://127.0.0.1"}, "AUTH0_BASE_URL"),
        ({"AUTH0_BASE_URL": "http://tenant.example.com"}, "must use https unless"),
        ({"AUTH0_LOG_RETENTION_HOURS": "0"}, "AUTH0_LOG_RETENTION_HOURS"),
        ({"AUTH0_CREDENTIALS_SECRET": None}, "AUTH0_CREDENTIALS_SECRET"),
        ({"AUTH0_CREDENTIALS_SECRET": None, "AUTH0_CLIENT_ID": "id"}, "AUTH0_CLIENT_SECRET"),
        ({"CHECKPOINT_TABLE": ""}, "CHECKPOINT_TABLE"),
        ({"DESTINATIONS": "cloudwatch,kinesis"}, "one or more of 'cloudwatch', 's3'"),
        ({"DESTINATIONS": "s3,s3"}, "DESTINATIONS"),
        ({"LOG_GROUP_NAME": None}, "LOG_GROUP_NAME"),
        ({"DESTINATIONS": "s3", "S3_BUCKET": None}, "S3_BUCKET"),
        ({"START_FROM": "yesterday"}, "'earliest', 'now' or an ISO-8601 instant"),
        ({"START_FROM": "2026-11-01T00:00:00"}, "START_FROM"),
        ({"OVERLAP_WINDOW_SECONDS": "-5"}, "OVERLAP_WINDOW_SECONDS"),
        ({"AUTH0_RATE_LIMIT_SHARE": "1.5"}, "from 0.01 to 1.0"),
        ({"AUTH0_RATE_LIMIT_SHARE": "half"}, "AUTH0_RATE_LIMIT_SHARE"),
        (
            {"AUTH0_RATE_LIMIT_PER_SECOND": "-2"},
            "AUTH0_RATE_LIMIT_PER_SECOND='-2'.*or 0 or nothing",
        ),
        ({"AUTH0_RATE_LIMIT_PER_SECOND": "fast"}, "from 0.01 to 10000 requests per second"),
        ({"AUTH0_RATE_LIMIT_PER_SECOND": "0.001"}, "AUTH0_RATE_LIMIT_PER_SECOND"),
        ({"AUTH0_RATE_LIMIT_PER_SECOND": "nan"}, "AUTH0_RATE_LIMIT_PER_SECOND"),
        ({"MAX_CONCURRENT_USERS": "0"}, "MAX_CONCURRENT_USERS"),
        ({"WATCHED_USER_IDS": "auth0|a,,auth0|b"}, "WATCHED_USER_IDS"),
        ({"WATCHED_USER_IDS": "auth0|a,#tenant"}, "the forwarder's own checkpoint items"),
        ({"READ_MODE": "tenant"}, "READ_MODE='tenant' is not allowed; use 'auto'"),
    ],
)
def test_each_bad_value_names_its_variable_and_allowed_values(
    changes: dict[str, str | None], names: str
) -> None:
    with pytest.raises(ConfigError, match=names.replace("|", r"\|").replace("(", r"\(")):
        settings(**changes)


def test_only_the_chosen_destinations_are_configured() -> None:
    s = settings(DESTINATIONS="s3", LOG_GROUP_NAME="/ignored")
    assert s.destinations == ("s3",)
    assert s.setting("LOG_GROUP_NAME") is None
    assert s.setting("S3_BUCKET") == "bucket"


def test_local_credentials_are_never_shown_by_repr() -> None:
    s = settings(
        AUTH0_CREDENTIALS_SECRET=None, AUTH0_CLIENT_ID="id", AUTH0_CLIENT_SECRET="hunter2-secret"
    )
    assert s.local_client_secret == "hunter2-secret"
    assert "hunter2" not in repr(s)


def test_start_from_instant_and_modes() -> None:
    assert parse_start_from("2026-11-01T00:00:00.250Z").instant_ms == 1_793_491_200_250
    assert parse_start_from("now").floor_ms(123) == 123
    assert parse_start_from("EARLIEST").floor_ms(123) is None
    assert parse_start_from("2026-11-01T01:00:00+01:00").floor_ms(0) == 1_793_491_200_000


def test_plain_http_is_accepted_only_towards_this_machine() -> None:
    local_aws = "http://127.0.0.1:5000"
    assert (
        settings(AUTH0_BASE_URL="http://127.0.0.1:8080/", AWS_ENDPOINT_URL=local_aws).auth0_base_url
        == "http://127.0.0.1:8080"
    )
    assert (
        settings(AUTH0_BASE_URL="http://localhost:9", AWS_ENDPOINT_URL=local_aws).auth0_base_url
        == "http://localhost:9"
    )
    assert settings(AUTH0_BASE_URL="https://proxy.example.com").auth0_base_url.startswith("https")
    assert settings(AUTH0_LOG_RETENTION_HOURS="720").log_retention_ms == 720 * 3_600_000


@pytest.mark.parametrize(
    "base_url",
    [
        "http://127.0.0.1:8080",
        "http://localhost:8080/",
        "http://[::1]:8080",
        "http://host.docker.internal:8080",
        "https://LOCALHOST",
    ],
)
@pytest.mark.parametrize("endpoint", [None, "", "   "])
def test_a_local_auth0_without_a_local_aws_endpoint_is_refused(
    base_url: str, endpoint: str | None
) -> None:
    # GIVEN a local Auth0 (the simulator) and no AWS_ENDPOINT_URL: a `sam local invoke` whose
    # template or env file forgot it would otherwise write to the host's real AWS account
    # WHEN the settings are read / THEN the error names both variables and the fix
    with pytest.raises(ConfigError) as error:
        settings(AUTH0_BASE_URL=base_url, AWS_ENDPOINT_URL=endpoint)
    message = str(error.value)
    assert "AUTH0_BASE_URL" in message
    assert "AWS_ENDPOINT_URL is not set" in message
    assert "real AWS account" in message
    assert "set AWS_ENDPOINT_URL" in message


def test_a_local_auth0_with_a_local_aws_endpoint_is_accepted() -> None:
    s = settings(
        AUTH0_BASE_URL="http://host.docker.internal:8080",
        AWS_ENDPOINT_URL="http://host.docker.internal:8081",
    )
    assert s.auth0_base_url == "http://host.docker.internal:8080"


def test_a_real_tenant_needs_no_aws_endpoint() -> None:
    # The real-tenant run (events/env.real-tenant.json.example) and every AWS deployment.
    assert settings(AUTH0_BASE_URL="").auth0_base_url == "https://example.eu.auth0.com"
    assert settings(AUTH0_BASE_URL="https://proxy.example.com").auth0_base_url.startswith("https")


@pytest.mark.parametrize(
    ("host", "accepted"),
    [
        ("127.0.0.2", True),  # the loopback network: an address this machine holds
        ("[::1]", True),
        ("192.0.2.10", False),  # TEST-NET-1: no interface here holds it
        ("10.255.255.254", False),
        ("tenant.example.com", False),  # a name is never resolved: it could point anywhere
    ],
)
def test_plain_http_goes_only_to_an_address_this_machine_holds(host: str, accepted: bool) -> None:
    # GIVEN a local Auth0 over plain HTTP at this host (make local-stack binds Docker's bridge
    # address on Linux, which the CLI on the same machine reaches)
    env = {
        "AUTH0_DOMAIN": "example.eu.auth0.com",
        "AUTH0_BASE_URL": f"http://{host}:8080",
        "AUTH0_CLIENT_ID": "id",
        "AUTH0_CLIENT_SECRET": "secret",
    }
    # WHEN the CLI reads it / THEN an address of this machine is accepted (the secret stays on
    # the machine), any other host refused by name
    if accepted:
        assert Settings.from_env(env, aws=False).auth0_base_url == f"http://{host}:8080"
    else:
        with pytest.raises(ConfigError, match="must use https unless it points at a local host"):
            Settings.from_env(env, aws=False)
