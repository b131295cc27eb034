"""What a CLI command runs against: the function's variables (the environment, an env file in
`sam local invoke --env-vars` form, flags), and the clients built from them.

The same variables as the deployed function, read by the same `Settings`, so a command sees the
tenant, tables and destinations the function does.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import httpx
from botocore.config import Config
from botocore.exceptions import BotoCoreError, NoCredentialsError, NoRegionError

from log_forwarder.auth0_client import Auth0Client
from log_forwarder.aws_errors import (
    aws_error_behind,
    error_code,
    failed_call,
    remember_failed_calls,
)
from log_forwarder.config import Settings
from log_forwarder.exceptions import ConfigError
from log_forwarder.runtime import auth0_client, secrets_client

# Operator commands are interactive: botocore may retry on its own (nothing here writes a
# destination except through the sinks, which get the function's own retry-less config).
CLI_AWS_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=5)


# Written at the repository's root by `make local-stack` while it runs (devtools/local_stack.py):
# the function's variables of events/env.json, with the addresses this machine reaches the
# stack at (env.json has the containers' host.docker.internal) and moto's dummy credentials.
LOCAL_STACK_FILE = ".local-stack.json"
CONTAINER_HOST = "host.docker.internal"

# The variables that name an AWS resource, and where a stack says their value.
RESOURCE_VARIABLES = {
    "CHECKPOINT_TABLE": "output CheckpointTableName",
    "WATCH_TABLE": "output WatchListTableName",
    "RULE_PACKS_TABLE": "output RulePacksTableName",
    "LOG_GROUP_NAME": "output ForwardedLogGroupName",
    "S3_BUCKET": "output ForwardedBucketName",
    "AUTH0_CREDENTIALS_SECRET": "parameter Auth0CredentialsSecretName",
    "PII_KEY_SECRET": "parameter PseudonymisationKeySecretName",
    "TENANTS_PARAMETER": "parameter TenantsParameterName",
}
_NOT_FOUND = {"ResourceNotFoundException", "NoSuchBucket", "ParameterNotFound", "QueueDoesNotExist"}
_CREDENTIALS_REFUSED = {
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidSignatureException",
}


def read_env_file(path: Path) -> dict[str, str]:
    """Variables of an env file: `{"ForwarderFunction": {...}}` as `sam local invoke --env-vars`
    takes it, or a flat object."""
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigError(f"env file {str(path)!r} cannot be read as JSON: {error}") from error
    if isinstance(loaded, dict) and isinstance(loaded.get("ForwarderFunction"), dict):
        loaded = loaded["ForwarderFunction"]
    if not isinstance(loaded, dict):
        raise ConfigError(f"env file {str(path)!r} must hold a JSON object of variables")
    return {str(name): str(value) for name, value in loaded.items()}


@dataclass(frozen=True)
class Environment:
    """The variables a command runs with: the process environment, then the env file, then
    the flags (each overriding the one before)."""

    variables: Mapping[str, str]
    _clients: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(cls, env_file: Path | None, flags: Mapping[str, str | None]) -> Environment:
        variables = dict(os.environ)
        if env_file is not None:
            variables.update(read_env_file(env_file))
        variables.update({name: value for name, value in flags.items() if value is not None})
        _refuse_container_addresses(variables, env_file)
        return cls(variables)

    def get(self, name: str) -> str | None:
        value = self.variables.get(name, "").strip()
        return value or None

    def settings(self, *, aws: bool = True) -> Settings:
        return Settings.from_env(self.variables, aws=aws)

    def aws_client(self, service: str, config: Config = CLI_AWS_CONFIG) -> Any:
        """A boto3 client for the account and region the variables name (AWS_ENDPOINT_URL
        included, for a local AWS)."""
        key = f"{service}:{id(config)}"
        if key not in self._clients:
            session = boto3.session.Session(
                aws_access_key_id=self.get("AWS_ACCESS_KEY_ID"),
                aws_secret_access_key=self.get("AWS_SECRET_ACCESS_KEY"),
                aws_session_token=self.get("AWS_SESSION_TOKEN"),
                region_name=self.get("AWS_REGION") or self.get("AWS_DEFAULT_REGION"),
                profile_name=self.get("AWS_PROFILE"),
            )
            self._clients[key] = remember_failed_calls(
                session.client(
                    service,  # type: ignore[call-overload]
                    endpoint_url=self.get("AWS_ENDPOINT_URL"),
                    config=config,
                )
            )
        return self._clients[key]

    def auth0_client(self, settings: Settings, http: httpx.Client | None = None) -> Auth0Client:
        """The function's Auth0 client: the same token handling, retries and pacing."""
        return auth0_client(settings, secrets_client(settings, self.aws_client), http)

    def required(self, name: str, what: str) -> str:
        value = self.get(name)
        if value is None:
            raise ConfigError(f"{name} is required: {what}")
        return value

    def explain_aws_failure(self, error: BaseException) -> str | None:
        """Which call failed, on which resource and in which region, the variable that named
        it, and the likely fix; None when no AWS call of this environment's is behind `error`."""
        if isinstance(error, NoRegionError):
            return "no AWS region is set: set AWS_REGION or pass --region (the stack's region)"
        if isinstance(error, NoCredentialsError):
            return (
                "no AWS credentials found: set AWS_PROFILE (or AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY) for the stack's account"
            )
        call = failed_call(error)
        if call is None:
            if isinstance(error, BotoCoreError) and self.get("AWS_ENDPOINT_URL"):
                return f"AWS_ENDPOINT_URL={self.get('AWS_ENDPOINT_URL')!r} is the AWS used"
            return None
        where = str(call)
        variable = next(
            (n for n in RESOURCE_VARIABLES if call.resource and self.get(n) == call.resource),
            None,
        )
        if variable is not None:
            where += f", named by {variable} (the stack's {RESOURCE_VARIABLES[variable]})"
        behind = aws_error_behind(error)
        code = error_code(behind) if behind is not None else ""
        if code in _NOT_FOUND:
            return (
                f"{where}: it does not exist there; check the name, and that the region is "
                "the stack's (AWS_REGION, --region)"
            )
        if "AccessDenied" in code or code == "UnauthorizedOperation":
            return (
                f"{where}: your AWS credentials may not make this call (docs/operations.md "
                "lists what each command needs)"
            )
        if code in _CREDENTIALS_REFUSED:
            return f"{where}: AWS refused the credentials (expired, or another account's?)"
        return where


def _refuse_container_addresses(variables: Mapping[str, str], env_file: Path | None) -> None:
    """events/env.json points at host.docker.internal, this machine as a container sees it;
    from the machine itself that name usually does not resolve, and every call would fail
    after its retries. Say so at once, and how to reach the local stack from here."""
    for name in ("AUTH0_BASE_URL", "AWS_ENDPOINT_URL"):
        value = variables.get(name, "").strip()
        try:
            host = urlsplit(value).hostname
        except ValueError:
            continue
        if host != CONTAINER_HOST:
            continue
        try:
            socket.getaddrinfo(host, None)
        except OSError:
            source = f" (from {env_file})" if env_file is not None else ""
            raise ConfigError(
                f"{name}={value!r}{source} is this machine as containers see it, and it does "
                f"not resolve here; that file is for `sam local invoke`. To point the CLI at "
                f"`make local-stack`, pass --local-stack instead"
            ) from None


def local_stack_file(start: Path) -> Path:
    """The variables of the `make local-stack` running from this clone (`--local-stack`)."""
    for folder in (start, *start.parents):
        candidate = folder / LOCAL_STACK_FILE
        if candidate.is_file():
            break
    else:
        raise ConfigError(
            f"--local-stack: no {LOCAL_STACK_FILE} here or above {str(start)!r}; start `make "
            "local-stack` in another terminal (it writes that file at the repository's root "
            "while it runs), and run this command inside the same clone"
        )
    try:
        pid = int(json.loads(candidate.read_text(encoding="utf-8")).get("pid"))
    except (OSError, ValueError, TypeError, AttributeError) as error:
        raise ConfigError(f"--local-stack: {str(candidate)!r} cannot be read: {error}") from None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise ConfigError(
            f"--local-stack: the `make local-stack` that wrote {str(candidate)!r} (pid {pid}) "
            "is not running any more; start it again"
        ) from None
    except PermissionError:
        pass  # alive, and someone else's
    return candidate
