"""Where the M2M application's client id and secret come from, and what to do when they don't.

In AWS: a Secrets Manager secret (AUTH0_CREDENTIALS_SECRET) holding
{"client_id", "client_secret"}, cached for five minutes and read again on demand after Auth0
refuses the cached one (a rotation). Locally: AUTH0_CLIENT_ID / AUTH0_CLIENT_SECRET.

Every failure names the secret, the region and the fix, and never the value.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters.exceptions import (
    GetParameterError,
    TransformParameterError,
)

from .auth0_client import ClientCredentials
from .aws_errors import AWS_ERRORS, error_code
from .config import Settings
from .exceptions import ConfigError

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager.client import SecretsManagerClient

SECRET_CACHE_S = 300
SECRET_SHAPE = '{"client_id": "...", "client_secret": "..."}'  # noqa: S105 - a shape


def credentials_source(
    settings: Settings, client: SecretsManagerClient | None
) -> Callable[[bool], ClientCredentials]:
    """`source(force_refresh)` → the credentials."""
    if settings.credentials_secret is None:
        assert settings.local_client_id
        assert settings.local_client_secret
        local = ClientCredentials(settings.local_client_id, settings.local_client_secret)
        return lambda _force: local
    secret_id = settings.credentials_secret
    provider, region = _secrets(client)

    def from_secrets_manager(force: bool) -> ClientCredentials:
        try:
            value = provider.get(
                secret_id, transform="json", max_age=SECRET_CACHE_S, force_fetch=force
            )
        except (GetParameterError, TransformParameterError) as error:
            raise secret_error(error, secret_id, region) from None
        if not isinstance(value, dict) or not all(
            isinstance(value.get(key), str) and value.get(key)
            for key in ("client_id", "client_secret")
        ):
            raise ConfigError(
                f"secret {secret_id!r} (AUTH0_CREDENTIALS_SECRET, region {region}) must hold "
                f"JSON with non-empty string fields client_id and client_secret: {SECRET_SHAPE}"
            )
        return ClientCredentials(value["client_id"], value["client_secret"])

    return from_secrets_manager


def secret_error(error: Exception, secret_id: str, region: str) -> ConfigError:
    """What went wrong reading the secret, and the fix. The value is never part of it (nor is
    Powertools' message, which may quote what it failed to parse)."""
    where = f"secret {secret_id!r} (AUTH0_CREDENTIALS_SECRET) in region {region}"
    if isinstance(error, TransformParameterError):
        return ConfigError(f"{where} is not JSON; store it as {SECRET_SHAPE}")
    cause = error.__context__
    code = error_code(cause) if isinstance(cause, AWS_ERRORS) else type(cause).__name__
    fixes = {
        "ResourceNotFoundException": (
            "does not exist: create it in that region (aws secretsmanager create-secret "
            f"--region {region} --name {secret_id} --secret-string '{SECRET_SHAPE}'), or set "
            "Auth0CredentialsSecretName to the name of the secret you have there (the function "
            "may read secrets of its own region and account only)"
        ),
        "AccessDeniedException": (
            "cannot be read by the function's role: it may read only the secret named by "
            "Auth0CredentialsSecretName in the stack's own region and account (a secret "
            "encrypted with a customer-managed KMS key also needs kms:Decrypt on that key)"
        ),
        "DecryptionFailure": "cannot be decrypted: grant the function kms:Decrypt on its key",
        "InvalidRequestException": "is scheduled for deletion or otherwise unusable: restore it",
    }
    fix = fixes.get(code, f"could not be read ({code}); check that it exists and is readable")
    return ConfigError(f"{where} {fix}")


def _secrets(client: SecretsManagerClient | None) -> tuple[parameters.SecretsProvider, str]:
    """Powertools' provider over the client runtime.py built, and its region. Never one of its
    own: Powertools would build a bare client, whose botocore retries nest under retry_call."""
    if client is None:
        raise TypeError("reading a secret needs the Secrets Manager client runtime.py builds")
    return parameters.SecretsProvider(boto3_client=client), client.meta.region_name


def pseudonym_key(secret_id: str, client: SecretsManagerClient | None) -> bytes:
    """The key pseudonyms are made with: the secret's `key` (JSON) or its whole text, at least
    32 characters. Read once per container: a new key would change every pseudonym, so rotating
    it is a deliberate redeploy, not something picked up mid-stream."""
    provider, region = _secrets(client)
    try:
        value = provider.get(secret_id, max_age=SECRET_CACHE_S)
    except GetParameterError as error:
        raise _key_error(secret_error(error, secret_id, region)) from None
    text = value.decode("utf-8") if isinstance(value, bytes) else str(value)
    if text.lstrip().startswith("{"):
        try:
            text = str(json.loads(text).get("key", ""))
        except (ValueError, AttributeError, RecursionError):
            text = ""
    if len(text) < 32:
        raise ConfigError(
            f"secret {secret_id!r} (PII_KEY_SECRET, region {region}) must hold a key of at "
            'least 32 characters, as {"key": "..."} or as the whole secret'
        )
    return text.encode("utf-8")


def _key_error(error: ConfigError) -> ConfigError:
    return ConfigError(str(error).replace("(AUTH0_CREDENTIALS_SECRET)", "(PII_KEY_SECRET)"))
