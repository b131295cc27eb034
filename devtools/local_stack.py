"""`make local-stack`: a local Auth0 and a local AWS for `sam local invoke`, on fixed ports.

It starts the project's Auth0 simulator and moto's server where a container can reach them,
creates on moto what template.yaml declares (stack "local"), seeds demo traffic, and prints the
`sam local invoke` command to run and how to read what the function wrote. It runs until Ctrl-C.

events/env.json is the single source of truth: the ports come from its AUTH0_BASE_URL and
AWS_ENDPOINT_URL, the tenant and client from its AUTH0_* variables, and the table, log group and
bucket it names are checked against what the template creates. So the file and the stack cannot
disagree without this command saying so.

While it runs, it also writes the same variables with the addresses this machine reaches the
stack at to `.local-stack.json` at the repository's root, for the CLI's `--local-stack`
(`auth0-log-forwarder --local-stack status`), and removes the file when it stops.

`make test-sam-local` (devtools/sam_local/check.py) drives the same LocalStack from Python.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import platform
import random
import shlex
import signal
import socket
import struct
import sys
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

import boto3
from boto3.dynamodb.types import TypeDeserializer

from devtools.auth0_simulator import Auth0Simulator, RateLimit
from devtools.harness import LocalDeployment
from devtools.local_aws import TEMPLATE_PATH, LocalAws
from devtools.traffic import generate_user_events
from log_forwarder.cli.environment import LOCAL_STACK_FILE

ROOT = TEMPLATE_PATH.parent
ENV_FILE = ROOT / "events" / "env.json"
EVENT_FILE = ROOT / "events" / "scheduled-event.json"
FUNCTION = "ForwarderFunction"
STACK_NAME = "local"
CONTAINER_HOST = "host.docker.internal"
# Dummy credentials for the function in the container: SAM CLI passes the host's AWS credentials
# into it, and these keep a developer's real ones out of a run that only talks to moto.
LOCAL_CREDENTIALS: Mapping[str, str] = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
# Names for the watched users' generated events (ids come from env.json's WATCHED_USER_IDS).
_NAMES = ("alice@example.com", "bob@example.com", "carol@example.com", "dave@example.com")
# The first user's history is past Auth0's 1,000-result cap, so a first run must read it
# through tenant-wide search; the others are ordinary.
_HISTORY_SIZES = (1150, 90, 35, 60)


class LocalStackError(RuntimeError):
    """The stack cannot start as events/env.json describes it; the message says what to do."""


# -- events/env.json ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvFile:
    """The function's variables for `sam local invoke --env-vars`, and what they imply."""

    path: Path
    variables: dict[str, str]

    @classmethod
    def load(cls, path: Path = ENV_FILE) -> EnvFile:
        document = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(document, dict) or not isinstance(document.get(FUNCTION), dict):
            raise LocalStackError(f"{path} must be {{{FUNCTION!r}: {{VARIABLE: value, ...}}}}")
        return cls(path, {str(k): str(v) for k, v in document[FUNCTION].items()})

    def __getitem__(self, name: str) -> str:
        try:
            return self.variables[name]
        except KeyError:
            raise LocalStackError(f"{self.path} does not set {name}") from None

    def port_of(self, name: str) -> int:
        """The port of a URL variable that must point at host.docker.internal."""
        url = urlsplit(self[name])
        if url.scheme != "http" or url.hostname != CONTAINER_HOST or url.port is None:
            raise LocalStackError(
                f"{self.path}: {name}={self[name]!r} must be http://{CONTAINER_HOST}:PORT, "
                "the address of this machine from inside a container"
            )
        return url.port

    @property
    def auth0_port(self) -> int:
        return self.port_of("AUTH0_BASE_URL")

    @property
    def aws_port(self) -> int:
        return self.port_of("AWS_ENDPOINT_URL")

    @property
    def watched_user_ids(self) -> list[str]:
        ids = [part.strip() for part in self["WATCHED_USER_IDS"].split(",") if part.strip()]
        if not ids:
            raise LocalStackError(f"{self.path}: WATCHED_USER_IDS names no user")
        return ids


# -- where a container can reach this machine --------------------------------------------------


def docker_bridge_address(interface: str = "docker0") -> str | None:
    """The IPv4 address of Docker's default bridge on this (Linux) host, if it has one.

    `--add-host host.docker.internal:host-gateway` resolves to it inside a container, so a
    server bound there is reachable from containers and from this machine, and from nowhere else.
    """
    if not sys.platform.startswith("linux"):
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            request = struct.pack("256s", interface.encode()[:15])
            answer = fcntl.ioctl(probe.fileno(), 0x8915, request)  # SIOCGIFADDR
        except OSError:
            return None
    return socket.inet_ntoa(answer[20:24])


def choose_host(requested: str) -> tuple[str, str]:
    """(address to bind, why). `auto`: Docker's bridge on Linux, else the loopback."""
    if requested != "auto":
        return requested, "as asked (--host)"
    bridge = docker_bridge_address()
    if bridge is not None:
        return bridge, "Docker's bridge (docker0): reachable from containers and this machine only"
    return "127.0.0.1", (
        "loopback: Docker Desktop forwards host.docker.internal there. On Linux with Docker "
        "Engine, start Docker first (no docker0 interface yet) or pass --host"
    )


def function_architecture() -> str:
    """The template's Architecture value matching this machine, so no emulation is needed."""
    machine = platform.machine().lower()
    return "arm64" if machine in ("arm64", "aarch64") else "x86_64"


def _check_port_free(host: str, port: int, what: str) -> None:
    # moto's server thread would die on a taken port and leave start() waiting forever.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise LocalStackError(
                f"cannot listen on {host}:{port} for {what} ({error.strerror}). Stop what uses "
                f"port {port}, or change the port in events/env.json"
            ) from None


class BoundAws(LocalAws):
    """LocalAws on a chosen address and port (LocalAws itself takes 127.0.0.1 and a free port)."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__()
        self._host = host
        self._port = port

    def start(self) -> BoundAws:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        _check_port_free(self._host, self._port, "the local AWS (moto)")
        server = ThreadedMotoServer(ip_address=self._host, port=self._port, verbose=False)
        server.start()
        _, port = server.get_host_and_port()
        reachable = "127.0.0.1" if self._host in ("", "0.0.0.0") else self._host
        self._server = server
        self._endpoint_url = f"http://{reachable}:{port}"
        self._session = boto3.session.Session(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            aws_session_token="testing",
            region_name=self.region,
        )
        return self


# -- what the destinations hold ----------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    user_id: str
    destination: str
    expected: int
    delivered: int
    missing: int
    duplicated: int  # events delivered more than once
    unexpected: int  # delivered events the simulator never served

    @property
    def ok(self) -> bool:
        return self.missing == 0 and self.duplicated == 0 and self.unexpected == 0


def _compare(user_id: str, destination: str, expected: set[str], got: Counter[str]) -> Delivery:
    return Delivery(
        user_id=user_id,
        destination=destination,
        expected=len(expected),
        delivered=sum(got.values()),
        missing=len(expected - set(got)),
        duplicated=sum(1 for count in got.values() if count > 1),
        unexpected=len(set(got) - expected),
    )


# -- the stack ---------------------------------------------------------------------------------


class LocalStack:
    """The Auth0 simulator and moto's server as events/env.json expects them, with the
    template's resources and seeded traffic. A context manager that stops both on exit."""

    def __init__(self, *, host: str = "auto", env_file: Path = ENV_FILE, seed: int = 2026) -> None:
        self.env = EnvFile.load(env_file)
        self.host, self.host_reason = choose_host(host)
        self.rng = random.Random(seed)
        self.users = self.env.watched_user_ids
        per_second = float(self.env.variables.get("AUTH0_RATE_LIMIT_PER_SECOND", "2"))
        self.simulator = Auth0Simulator(
            domain=self.env["AUTH0_DOMAIN"],
            client_id=self.env["AUTH0_CLIENT_ID"],
            client_secret=self.env["AUTH0_CLIENT_SECRET"],
            # A tenant of the limit env.json declares, with a small burst: pacing shows.
            rate_limit=RateLimit(burst=10, per_second=per_second),
            latency_s=0.02,
            seed=seed,
        )
        self.aws = BoundAws(self.host, self.env.aws_port)
        self._deployment: LocalDeployment | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> LocalStack:
        src = str(ROOT / "src")
        if src not in sys.path:
            # The readers below use the function's own stream naming and checkpoint decoding.
            sys.path.insert(0, src)
        _check_port_free(self.host, self.env.auth0_port, "the Auth0 simulator")
        self.aws.start()
        try:
            self.simulator.start(self.host, self.env.auth0_port)
            self._deployment = LocalDeployment(
                self.aws,
                self.simulator,
                stack_name=STACK_NAME,
                destinations=self.env["DESTINATIONS"],
                watched_user_ids=self.users,
            )
            self._check_names()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.simulator.stop()
        self.aws.stop()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def deployment(self) -> LocalDeployment:
        if self._deployment is None:
            raise RuntimeError("LocalStack is not started")
        return self._deployment

    def _check_names(self) -> None:
        resources = self.deployment.resources
        wanted = {
            "CHECKPOINT_TABLE": resources.table_name,
            "WATCH_TABLE": resources.watch_table or "",
            "LOG_GROUP_NAME": resources.log_group or "",
            "S3_BUCKET": resources.bucket or "",
            "PUSHED_EVENTS_TABLE": resources.pushed_table or "",
        }
        wrong = {
            name: (self.env.variables.get(name, ""), value)
            for name, value in wanted.items()
            if self.env.variables.get(name, "") != value
        }
        if wrong:
            details = "; ".join(f"{n}={have!r}, stack has {w!r}" for n, (have, w) in wrong.items())
            raise LocalStackError(
                f"{self.env.path} does not name what template.yaml creates for stack "
                f"{STACK_NAME!r}: {details}"
            )

    # -- traffic -------------------------------------------------------------------------------

    def _name(self, index: int) -> str:
        return _NAMES[index % len(_NAMES)]

    def seed_history(
        self, now: datetime | None = None, sizes: Sequence[int] = _HISTORY_SIZES
    ) -> dict[str, int]:
        """Two days of each user's events (by default the first user's past the 1,000-result
        cap, so a first run has to read it through tenant-wide search)."""
        now = now or datetime.now(UTC)
        added: dict[str, int] = {}
        for index, user in enumerate(self.users):
            count = sizes[index % len(sizes)]
            self.simulator.add_events(
                generate_user_events(
                    user,
                    count=count,
                    start=now - timedelta(days=2),
                    end=now - timedelta(minutes=30),
                    rng=self.rng,
                    user_name=self._name(index),
                    tenant_hostname=self.env["AUTH0_DOMAIN"],
                )
            )
            added[user] = count
        return added

    def add_new_events(self, now: datetime | None = None) -> dict[str, int]:
        """A few events per user, dated in the last five minutes."""
        now = now or datetime.now(UTC)
        added: dict[str, int] = {}
        for index, user in enumerate(self.users):
            count = self.rng.randint(4, 16)
            self.simulator.add_events(
                generate_user_events(
                    user,
                    count=count,
                    start=now - timedelta(minutes=5),
                    end=now - timedelta(seconds=5),
                    rng=self.rng,
                    user_name=self._name(index),
                    tenant_hostname=self.env["AUTH0_DOMAIN"],
                )
            )
            added[user] = count
        return added

    # -- reading the results -------------------------------------------------------------------

    def deliveries(self) -> list[Delivery]:
        """Per user and destination: what the simulator serves against what was delivered."""
        rows: list[Delivery] = []
        deployment = self.deployment
        s3_records = deployment.s3_records() if deployment.resources.bucket else []
        for user in self.users:
            expected = {str(e["log_id"]) for e in self.simulator.visible_events(user)}
            if deployment.resources.log_group:
                got = Counter(
                    str(r["log_id"]) for r in deployment.cloudwatch_records(user) if "log_id" in r
                )
                rows.append(_compare(user, "cloudwatch", expected, got))
            if deployment.resources.bucket:
                got = Counter(
                    str(r["log_id"])
                    for r in s3_records
                    if "log_id" in r and r.get("_forwarder", {}).get("watched_user_id") == user
                )
                rows.append(_compare(user, "s3", expected, got))
        return rows

    def checkpoints(self) -> dict[str, dict[str, Any]]:
        """The checkpoint table's items as an operator sees them (without the binary state)."""
        deserializer = TypeDeserializer()
        items: dict[str, dict[str, Any]] = {}
        paginator = self.aws.client("dynamodb").get_paginator("scan")
        for page in paginator.paginate(TableName=self.deployment.resources.table_name):
            for item in page.get("Items", []):
                plain = {
                    name: deserializer.deserialize(value)
                    for name, value in item.items()
                    if name != "state"
                }
                items[str(plain.pop("user_id"))] = plain
        return items

    def newest_dates(self) -> dict[str, str | None]:
        """Per user, the date of the newest event the simulator serves."""
        newest: dict[str, str | None] = {}
        for user in self.users:
            dates = [str(e["date"]) for e in self.simulator.visible_events(user)]
            newest[user] = max(dates) if dates else None
        return newest

    def issued_tokens(self) -> list[str]:
        """Access tokens the simulator handed out (none may appear in a log line)."""
        with self.simulator._lock:
            return list(self.simulator._tokens)

    def report(self) -> str:
        lines = ["What the destinations hold, against what the Auth0 simulator serves:"]
        lines.append(
            f"   {'user':42} {'destination':11} {'expected':>8} {'delivered':>9} "
            f"{'missing':>7} {'duplicated':>10} {'unexpected':>10}"
        )
        for row in self.deliveries():
            lines.append(
                f"   {row.user_id[:42]:42} {row.destination:11} {row.expected:>8} "
                f"{row.delivered:>9} {row.missing:>7} {row.duplicated:>10} {row.unexpected:>10}"
            )
        lines.append(f"Checkpoints (table {self.deployment.resources.table_name}):")
        checkpoints = self.checkpoints()
        for user in self.users:
            item = checkpoints.get(user)
            lines.append(f"   {user[:42]:42} {format_checkpoint(item)}")
        from log_forwarder.read_mode import TENANT_KEY  # src/ is on the path once deployed

        tenant = checkpoints.get(TENANT_KEY)
        if tenant is not None:
            # The tenant item: how the last run read Auth0, and why (docs/reading-auth0.md).
            lines.append(
                f"Read mode: {tenant.get('read_mode')} ({tenant.get('read_mode_reason')}); "
                f"stream checkpoint {tenant.get('stream_position')}"
            )
        return "\n".join(lines)

    # -- the CLI -------------------------------------------------------------------------------

    def cli_variables(self) -> dict[str, str]:
        """The function's variables of env.json as the CLI on this machine needs them: the
        addresses it reaches the stack at, and moto's dummy credentials."""
        return {
            **self.env.variables,
            **LOCAL_CREDENTIALS,
            "AUTH0_BASE_URL": self.simulator.base_url,
            "AWS_ENDPOINT_URL": self.aws.endpoint_url,
        }

    def write_cli_file(self, path: Path) -> Path:
        """`path` (LOCAL_STACK_FILE for `make local-stack`): this process and its variables,
        which `auth0-log-forwarder --local-stack` reads while the process lives."""
        document = {"pid": os.getpid(), FUNCTION: self.cli_variables()}
        path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        return path

    # -- commands for the user -----------------------------------------------------------------

    def sam_invoke_command(self, *extra: str, **options: Any) -> list[str]:
        return sam_invoke_command(self.env.path, function_architecture(), *extra, **options)

    def banner(self, seeded: Mapping[str, int]) -> str:
        resources = self.deployment.resources
        endpoint = self.aws.endpoint_url
        arch = function_architecture()
        env_path = _relative(self.env.path)
        invoke = " ".join(
            [*(f"{k}={v}" for k, v in LOCAL_CREDENTIALS.items() if k != "AWS_REGION")]
            + [shlex.quote(part) for part in self.sam_invoke_command()]
        )
        from log_forwarder.sinks.batching import stream_name_for

        streams = "\n".join(
            f"      {user}: {shlex.quote(stream_name_for(user))}"
            for user in self.users
            if resources.log_group
        )
        aws = f"aws --endpoint-url {endpoint}"
        seeded_text = ", ".join(f"{user} {count}" for user, count in seeded.items())
        return f"""\
auth0-user-log-forwarder: local stack for `sam local invoke` (settings from {env_path})
  Auth0 simulator   {self.simulator.base_url}  (containers: {self.env["AUTH0_BASE_URL"]})
                    tenant {self.simulator.domain}, client {self.simulator.client_id}, \
{self.simulator.rate_limit.per_second if self.simulator.rate_limit else 0:g} req/s
  AWS (moto server) {endpoint}  (containers: {self.env["AWS_ENDPOINT_URL"]})
  listening on      {self.host}: {self.host_reason}
  template.yaml, stack {STACK_NAME!r}: table {resources.table_name}, log group \
{resources.log_group}, bucket {resources.bucket}, secret {resources.secret_id}
  seeded events     {seeded_text}

Run the function in Docker, from another terminal in {_relative(ROOT) or "."}:
  sam build --parameter-overrides Architecture={arch}
  {invoke}
  (SAM CLI pulls public.ecr.aws/lambda/python:3.12 the first time. The credentials are dummies
   for moto; they keep your own AWS credentials out of the container.)

Or point the operator's CLI at it from this machine ({LOCAL_STACK_FILE} holds the variables):
  auth0-log-forwarder --local-stack check
  auth0-log-forwarder --local-stack run --local ./out      # forward into a directory
  auth0-log-forwarder --local-stack status                 # after an invocation: the table

Read the results:
  here: press Enter for each destination's content against the simulator (expected /
        delivered / missing / duplicated) and the checkpoints; "n" + Enter adds new events;
        Ctrl-C stops the stack.
  or with the AWS CLI (export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
AWS_DEFAULT_REGION=us-east-1 first):
    {aws} dynamodb scan --table-name {resources.table_name} \
--projection-expression "user_id, version, watermark, forwarded_total, backlog, pending_events"
    {aws} logs get-log-events --log-group-name {resources.log_group} --log-stream-name STREAM
{streams}
    {aws} s3 ls --recursive s3://{resources.bucket}/   (objects are gzipped JSON lines)
"""


def sam_invoke_command(
    env_path: Path,
    architecture: str,
    *extra: str,
    function: str = FUNCTION,
    event: Path = EVENT_FILE,
    parameters: Sequence[str] = (),
) -> list[str]:
    """`sam local invoke` for the local stack (relative paths when run from the repository)."""
    return [
        "sam",
        "local",
        "invoke",
        function,
        "--event",
        _relative(event),
        "--env-vars",
        _relative(env_path),
        "--parameter-overrides",
        f"Architecture={architecture}",
        *parameters,
        # Makes host.docker.internal this machine on Linux too (Docker Desktop has it anyway).
        "--add-host",
        f"{CONTAINER_HOST}:host-gateway",
        *extra,
    ]


def format_checkpoint(item: Mapping[str, Any] | None) -> str:
    if item is None:
        return "no checkpoint"
    fields = ("version", "watermark", "forwarded_total", "pending_events", "backlog", "gaps_total")
    return "  ".join(f"{name}={_plain(item.get(name))}" for name in fields)


def _plain(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower() if value is not None else "-"
    return str(value)


def _relative(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd().resolve())) or "."
    return str(path)


# -- `make local-stack` ------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument(
        "--host",
        default="auto",
        help="IPv4 address to listen on. auto (default): Docker's bridge (docker0) on Linux, "
        "else 127.0.0.1 (Docker Desktop). 0.0.0.0 listens on every interface.",
    )
    parser.add_argument("--env-file", type=Path, default=ENV_FILE, help="default: events/env.json")
    args = parser.parse_args(argv)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # Both, explicitly: a shell starts background jobs with SIGINT ignored.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        stack = LocalStack(host=args.host, env_file=args.env_file).start()
    except LocalStackError as error:
        print(f"local stack: {error}", file=sys.stderr)
        return 2
    cli_file = ROOT / LOCAL_STACK_FILE
    try:
        stack.write_cli_file(cli_file)
        seeded = stack.seed_history()
        print(stack.banner(seeded), flush=True)
        interactive = sys.stdin.isatty()
        while not stop.is_set():
            if not interactive:
                stop.wait(3600)
                continue
            try:
                command = input("local stack> ").strip().lower()
            except EOFError:
                interactive = False
                continue
            if command in ("n", "new"):
                added = stack.add_new_events()
                print("added " + ", ".join(f"{u} {n}" for u, n in added.items()))
            elif command in ("q", "quit", "exit"):
                break
            else:
                print(stack.report())
    except KeyboardInterrupt:
        print()
    finally:
        cli_file.unlink(missing_ok=True)
        stack.stop()
        print("local stack stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
