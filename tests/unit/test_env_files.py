"""The events/ env files for `sam local invoke --env-vars`: every variable they set is declared by
the template (SAM CLI silently drops the others), and what the function then sees is a valid,
safe configuration: local runs talk to the local AWS, real-tenant runs to no local host."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from devtools.local_aws import TEMPLATE_PATH, load_template
from log_forwarder.config import Settings

EVENTS = TEMPLATE_PATH.parent / "events"
LOCAL_ENV = EVENTS / "env.json"
REAL_TENANT_ENV = EVENTS / "env.real-tenant.json.example"
ENV_FILES = [LOCAL_ENV, REAL_TENANT_ENV]


def declared_variables() -> dict[str, Any]:
    """The function's variables as SAM merges them: Globals, then the function's own."""
    template = load_template()
    return {
        **template["Globals"]["Function"]["Environment"]["Variables"],
        **template["Resources"]["ForwarderFunction"]["Properties"]["Environment"]["Variables"],
    }


def env_file(path: Path) -> dict[str, str]:
    document = json.loads(path.read_text(encoding="utf-8"))
    # The scheduled function, and (local file) the real-time one for `make test-sam-local`
    # (tests/unit/test_template.py checks its variables).
    assert next(iter(document)) == "ForwarderFunction", f"{path.name}: functions by logical id"
    assert set(document) <= {"ForwarderFunction", "RealtimeFunction"}, path.name
    variables = document["ForwarderFunction"]
    assert all(isinstance(value, str) for value in variables.values()), "values must be strings"
    return dict(variables)


def as_sam_local_passes_it(path: Path) -> dict[str, str]:
    """What the function's environment holds under `sam local invoke --env-vars PATH`.

    SAM CLI keeps only the variables the template declares, with the file's value where it
    gives one. (Template values that are intrinsics are not resolved locally; the env files set
    every variable, so none is left to them.)
    """
    declared = declared_variables()
    values = env_file(path)
    return {name: values[name] for name in declared if name in values}


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_every_variable_an_env_file_sets_is_declared_by_the_template(path: Path) -> None:
    # The check that would have caught env.json's AWS_ENDPOINT_URL being dropped by SAM CLI.
    undeclared = set(env_file(path)) - set(declared_variables())
    assert not undeclared, (
        f"{path.name} sets {sorted(undeclared)}, which template.yaml does not declare: "
        "`sam local invoke --env-vars` would silently ignore them"
    )


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_an_env_file_sets_every_variable_the_function_reads(path: Path) -> None:
    # Nothing left to the template's unresolvable references (!Ref CheckpointTable, ...).
    function_variables = set(
        load_template()["Resources"]["ForwarderFunction"]["Properties"]["Environment"]["Variables"]
    )
    missing = function_variables - set(env_file(path))
    assert not missing, f"{path.name} does not set {sorted(missing)}"


def test_the_local_run_gets_a_valid_configuration_that_talks_to_the_local_aws() -> None:
    # GIVEN what the function sees under `sam local invoke --env-vars events/env.json`
    env = as_sam_local_passes_it(LOCAL_ENV)
    # WHEN it reads its settings / THEN they are valid: the guard against a local Auth0 without a
    # local AWS is satisfied, which it would not be if the template did not declare
    # AWS_ENDPOINT_URL (SAM CLI would drop it)
    settings = Settings.from_env(env)
    assert urlsplit(settings.auth0_base_url).hostname == "host.docker.internal"
    assert urlsplit(env["AWS_ENDPOINT_URL"]).hostname == "host.docker.internal"
    assert settings.local_client_secret is not None
    assert "not-a-real-secret" in settings.local_client_secret
    assert settings.destinations == ("cloudwatch", "s3")


def test_the_local_run_without_aws_endpoint_url_would_be_refused() -> None:
    # GIVEN the local env file as a template lacking the AWS_ENDPOINT_URL declaration passes it
    env = as_sam_local_passes_it(LOCAL_ENV)
    env.pop("AWS_ENDPOINT_URL", None)
    # THEN the function refuses to start rather than write to a real account
    from log_forwarder.exceptions import ConfigError

    with pytest.raises(ConfigError, match="AWS_ENDPOINT_URL is not set"):
        Settings.from_env(env)


def test_the_real_tenant_example_reads_the_tenant_and_a_real_aws_account() -> None:
    env = env_file(REAL_TENANT_ENV)
    # Same variables as the local file: one list to keep in step with the template.
    assert set(env) == set(env_file(LOCAL_ENV))
    # No local host, no local AWS, no client secret on disk: credentials from Secrets Manager.
    assert env["AUTH0_BASE_URL"] == ""
    assert env["AWS_ENDPOINT_URL"] == ""
    assert env["AUTH0_CLIENT_ID"] == env["AUTH0_CLIENT_SECRET"] == ""
    assert env["AUTH0_CREDENTIALS_SECRET"]
    settings = Settings.from_env(as_sam_local_passes_it(REAL_TENANT_ENV))
    assert settings.auth0_base_url == f"https://{env['AUTH0_DOMAIN']}"
    assert settings.credentials_secret == env["AUTH0_CREDENTIALS_SECRET"]
