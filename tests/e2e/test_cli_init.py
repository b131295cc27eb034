"""`init` end to end: the installed script, answers typed on stdin (or flags), the secret made in
moto's server, the credentials and ids tried against the Auth0 simulator; the file read back by
tomllib and, when `make .venv-sam/.installed` has made it, by SAM CLI's own parser."""

from __future__ import annotations

import json
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.auth0_simulator import Auth0Simulator
from devtools.local_aws import LocalAws
from tests.cli_support import CLI_LEDGER, flat, run_cli
from tests.e2e.conftest import GENEROUS

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"
KNOWN, ODD = "auth0|64b7f0c2e4a1d9a3c1f00a11", "google-oauth2|1098/odd id@x=y"
MISTYPED = "auth0|64b7f0c2e4a1d9a3c1f00a1"


@pytest.fixture
def sim() -> Iterator[Auth0Simulator]:
    with Auth0Simulator(rate_limit=GENEROUS) as simulator:
        simulator.set_scopes(["read:logs", "read:logs_users", "read:users"])
        for user in (KNOWN, ODD):
            simulator.add_user(user)
        yield simulator


def env_for(aws: LocalAws, sim: Auth0Simulator) -> dict[str, str]:
    """An operator's shell: AWS credentials and region, and the tenant at the simulator."""
    return {**aws.env(), "AUTH0_BASE_URL": sim.base_url}


def read_by_sam(path: Path) -> dict[str, Any]:
    """The deploy parameters as SAM CLI's own config reader and parameter parser see them."""
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from samcli.lib.config.samconfig import SamConfig\n"
        "from samcli.cli.types import CfnParameterOverridesType\n"
        "path = Path(sys.argv[1])\n"
        "deploy = SamConfig(str(path.parent), path.name).get_all(['deploy'], 'parameters')\n"
        "overrides = CfnParameterOverridesType().convert(deploy['parameter_overrides'], None, None)\n"
        "print(json.dumps({'deploy': dict(deploy), 'overrides': dict(overrides)}, default=str))\n"
    )
    done = subprocess.run(
        [str(SAM_PYTHON), "-c", script, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_init_asks_six_questions_checks_each_and_writes_what_sam_deploy_reads(
    aws: LocalAws, sim: Auth0Simulator, tmp_path: Path
) -> None:
    # GIVEN an operator's shell with AWS credentials, and a tenant whose M2M application has
    # no secret in the region yet
    output = tmp_path / "samconfig.toml"
    secret = f"auth0-user-log-forwarder/init-{tmp_path.name}"
    answers = [
        "",  # region: the shell's (AWS_REGION)
        f"https://{sim.domain}/",  # refused: the domain alone
        sim.domain,
        secret,
        "y",  # it does not exist: create it
        sim.client_id,
        sim.client_secret,  # hidden
        f"{KNOWN},{MISTYPED}",  # refused: Auth0 does not know the second
        f"{KNOWN},{ODD}",
        "cloudwatch,s3",
        "not-an-address",  # refused
        "secops@example.com",
    ]
    # WHEN init runs with those answers typed
    done = run_cli(
        "init", "--output", str(output), env=env_for(aws, sim), stdin="\n".join(answers) + "\n"
    )
    # THEN it re-asked each answer its rule refused, naming the rule
    assert done.returncode == 0, done.stdout + done.stderr
    said = flat(done.stdout + done.stderr)
    assert "the domain alone, without scheme or slash" in said
    assert f"Auth0 does not know {MISTYPED!r}" in said
    assert "'not-an-address' is not an e-mail address" in said
    # AND the secret exists now, holding the credentials Auth0 gave a token for
    value = aws.client("secretsmanager").get_secret_value(SecretId=secret)["SecretString"]
    assert json.loads(value) == {"client_id": sim.client_id, "client_secret": sim.client_secret}
    assert sim.client_secret not in said
    # AND the file is SAM CLI's format with the five answers and nothing else set
    config = tomllib.loads(output.read_text(encoding="utf-8"))
    deploy = config["default"]["deploy"]["parameters"]
    assert config["version"] == 0.1
    assert deploy["region"] == aws.region and deploy["capabilities"] == "CAPABILITY_IAM"
    assert deploy["stack_name"] == "auth0-user-log-forwarder" and deploy["resolve_s3"] is True
    expected = {
        "Auth0Domain": sim.domain,
        "Auth0CredentialsSecretName": secret,
        "WatchedUserIds": f"{KNOWN},{ODD}",
        "Destinations": "cloudwatch,s3",
        "AlarmEmail": "secops@example.com",
    }
    assert deploy["parameter_overrides"] == " ".join(f'{k}="{v}"' for k, v in expected.items())
    assert "sam build" in done.stdout and "python3.12" in done.stdout
    # AND SAM CLI's own reader sees the same, ids with spaces, / and | included
    if SAM_PYTHON.exists():
        by_sam = read_by_sam(output)
        assert by_sam["overrides"] == expected
        assert by_sam["deploy"]["confirm_changeset"] is True
    prompts = 6 + 3  # six questions, and three more because the secret was created here
    CLI_LEDGER.append(("init", "prompts (with the secret created) vs guided", f"{prompts} vs 44"))


def test_init_without_prompts_from_flags_and_its_refusals(
    aws: LocalAws, sim: Auth0Simulator, tmp_path: Path
) -> None:
    env = env_for(aws, sim)
    secret = f"auth0-user-log-forwarder/flags-{tmp_path.name}"
    output = tmp_path / "samconfig.toml"
    flags = ["init", "--no-input", "--output", str(output), "--domain", sim.domain]
    # GIVEN a secret that does not exist, and credentials Auth0 refuses
    refused = run_cli(
        *flags,
        "--secret",
        secret,
        "--create-secret",
        env={**env, "AUTH0_CLIENT_ID": sim.client_id, "AUTH0_CLIENT_SECRET": "wrong-secret-42"},
    )
    # THEN nothing is created or written, and the secret is never printed
    assert refused.returncode == 2
    assert "Auth0 refuses these credentials" in flat(refused.stderr)
    assert "wrong-secret-42" not in refused.stdout + refused.stderr
    assert not output.exists()
    secrets = aws.client("secretsmanager").list_secrets()["SecretList"]
    assert secret not in [s["Name"] for s in secrets]
    # AND a missing secret without --create-secret says how to go on
    missing = run_cli(*flags, "--secret", secret, env=env)
    assert missing.returncode == 2 and "does not exist in" in missing.stderr
    assert "--create-secret" in missing.stderr
    # WHEN the secret exists / THEN every answer comes from the flags, defaults for the rest
    aws.client("secretsmanager").create_secret(
        Name=secret,
        SecretString=json.dumps({"client_id": sim.client_id, "client_secret": sim.client_secret}),
    )
    done = run_cli(*flags, "--secret", secret, "--watched-user-ids", KNOWN, env=env)
    assert done.returncode == 0, done.stderr
    overrides = tomllib.loads(output.read_text())["default"]["deploy"]["parameters"][
        "parameter_overrides"
    ]
    assert overrides == (
        f'Auth0Domain="{sim.domain}" Auth0CredentialsSecretName="{secret}" '
        f'WatchedUserIds="{KNOWN}" Destinations="cloudwatch"'
    )
    # AND an existing file is kept unless --force, and an unknown id is refused by name
    again = run_cli(*flags, "--secret", secret, env=env)
    assert again.returncode == 2 and "--force" in again.stderr
    typo = run_cli(*flags, "--force", "--secret", secret, "--watched-user-ids", MISTYPED, env=env)
    assert typo.returncode == 2 and f"Auth0 does not know {MISTYPED!r}" in flat(typo.stderr)
    # AND --force keeps what it replaces beside it (another environment a team kept there)
    earlier = output.read_text() + '\n[prod.deploy.parameters]\nstack_name = "prod"\n'
    output.write_text(earlier)
    forced = run_cli(*flags, "--force", "--secret", secret, "--watched-user-ids", KNOWN, env=env)
    assert forced.returncode == 0, forced.stderr
    assert (tmp_path / "samconfig.toml.bak").read_text() == earlier
    assert "kept as" in flat(forced.stdout + forced.stderr)
    assert "prod" not in tomllib.loads(output.read_text())
    # AND without a domain it names the flag
    bare = run_cli("init", "--no-input", "--output", str(tmp_path / "x.toml"), env=aws.env())
    assert bare.returncode == 2 and "--domain is required with --no-input" in bare.stderr


def test_init_says_each_watched_id_it_could_not_verify_as_check_does(
    aws: LocalAws, sim: Auth0Simulator, tmp_path: Path
) -> None:
    env = env_for(aws, sim)
    secret = f"auth0-user-log-forwarder/unverified-{tmp_path.name}"
    aws.client("secretsmanager").create_secret(
        Name=secret,
        SecretString=json.dumps({"client_id": sim.client_id, "client_secret": sim.client_secret}),
    )
    flags = ["init", "--no-input", "--force", "--domain", sim.domain, "--secret", secret]
    # GIVEN a token without read:users (as the local stack's): a mistyped id's log is empty
    sim.set_scopes(["read:logs", "read:logs_users"])
    output = tmp_path / "samconfig.toml"
    done = run_cli(*flags, "--output", str(output), "--watched-user-ids", MISTYPED, env=env)
    # THEN init writes it, but says it is unverified, in check's words
    assert done.returncode == 0, done.stderr
    said = flat(done.stdout + done.stderr)
    assert f"{MISTYPED!r}: unverified: the token lacks read:users" in said, said
    assert "grant read:users to have it checked, or check the id in the dashboard" in said
    checked = run_cli("check", MISTYPED, env={**env, "AUTH0_DOMAIN": sim.domain,
                      "AUTH0_CREDENTIALS_SECRET": secret})  # fmt: skip
    assert f"{MISTYPED!r}: unverified: the token lacks read:users" in flat(checked.stdout)
    # AND when Auth0 cannot be tried at all, each id is said unverified, not passed in silence
    away = {**env, "AUTH0_BASE_URL": "http://127.0.0.1:9"}
    cut = run_cli(*flags, "--output", str(tmp_path / "b.toml"), "--watched-user-ids",
                  f"{KNOWN},{MISTYPED}", env=away)  # fmt: skip
    assert cut.returncode == 0, cut.stderr
    said = flat(cut.stdout + cut.stderr)
    assert "could not be tried against Auth0" in said
    for user in (KNOWN, MISTYPED):
        assert f"{user!r}: unverified: Auth0 could not be tried" in said, said
