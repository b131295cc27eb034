"""`init`'s rules are the template's, and the file it writes is what it was told (the prompts,
AWS and Auth0 are driven end to end in tests/e2e/test_cli_init.py)."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime

import click
import pytest

from devtools.local_aws import load_template
from log_forwarder.cli.init import (
    DEFAULT_SECRET,
    DEFAULT_STACK,
    RULES,
    Answers,
    parse_watched,
    samconfig_text,
    valid_destinations,
    valid_domain,
    valid_region,
)


def test_each_rule_is_the_template_parameters_own() -> None:
    parameters = load_template()["Parameters"]
    for name, (pattern, what) in RULES.items():
        assert parameters[name]["AllowedPattern"] == pattern, name
        assert parameters[name]["ConstraintDescription"] == what, name
    # Every choice the template allows is an answer, spelt as the template spells it.
    allowed = parameters["Destinations"]["AllowedValues"]
    assert [valid_destinations(value) for value in allowed] == allowed
    assert parameters["Auth0CredentialsSecretName"]["Default"] == DEFAULT_SECRET
    # A stack name the file writes is one CloudFormation and the README's commands use.
    assert DEFAULT_STACK == "auth0-user-log-forwarder"


def test_the_file_holds_the_answers_and_nothing_unasked() -> None:
    answers = Answers(
        "fwd-prod", "eu-west-1", "t.eu.auth0.com", "s/n", ("auth0|a", "x|b c/d@e=f"), "s3", ""
    )
    config = tomllib.loads(samconfig_text(answers, datetime(2026, 12, 1, tzinfo=UTC)))
    deploy = config["default"]["deploy"]["parameters"]
    assert deploy["parameter_overrides"] == (
        'Auth0Domain="t.eu.auth0.com" Auth0CredentialsSecretName="s/n" '
        'WatchedUserIds="auth0|a,x|b c/d@e=f" Destinations="s3"'
    )
    assert (deploy["stack_name"], deploy["region"], deploy["s3_prefix"]) == (
        "fwd-prod",
        "eu-west-1",
        "fwd-prod",
    )


@pytest.mark.parametrize(
    ("rule", "value", "says"),
    [
        (valid_domain, "https://t.eu.auth0.com", "without scheme"),
        (valid_domain, "t_eu.auth0", "Auth0Domain rule"),
        (valid_region, "Ireland", "AWS region"),
        (valid_destinations, "kinesis", "'cloudwatch'"),
        (parse_watched, "auth0|a, auth0|b", "starts or ends with a space"),
        (parse_watched, 'auth0|a,"auth0|b"', "'\"'"),
    ],
)
def test_each_answer_is_refused_by_its_own_rule_naming_it(
    rule: object, value: str, says: str
) -> None:
    with pytest.raises(click.BadParameter, match=None) as refused:
        rule(value)  # type: ignore[operator]
    assert says in refused.value.message


def test_destinations_in_either_order_and_an_empty_watch_list() -> None:
    assert valid_destinations(" s3, cloudwatch ") == "cloudwatch,s3"
    assert parse_watched("") == ()
