"""What a CLI command runs against: the function's variables (the environment, an env file in
`sam local invoke --env-vars` form, flags), and the clients built from them.

The same variables as the deployed function, read by the same `Settings`, so a command sees the
tenant, tables and destinations the function does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
from botocore.config import Config

from log_forwarder.auth0_client import Auth0Client
from log_forwarder.config import Settings
from log_forwarder.exceptions import ConfigError
from log_forwarder.runtime import auth0_client, secrets_client

# Operator commands are interactive: botocore may retry on its own (nothing here writes a
# destination except through the sinks, which get the function's own retry-less config).
CLI_AWS_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=5)


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
            self._clients[key] = session.client(
                service,  # type: ignore[call-overload]
                endpoint_url=self.get("AWS_ENDPOINT_URL"),
                config=config,
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
