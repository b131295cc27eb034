"""The one composition root: settings → clients → store, sources, sinks → the Forwarder.

The scheduled function (app.py), the tenant worker (worker.py) and the CLI's `run --local` and
`backfill` all build their runtime here, with the same client
configuration; what a caller does differently (the CLI's SQLite store, its counting and
redelivering wrappers, a backfill's bounded source) is an `Overrides` of it.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
import httpx

from .auth0_client import Auth0Client
from .aws_errors import AWS_CLIENT_CONFIG, IDEMPOTENT_CLIENT_CONFIG, ClientFactory, session_clients
from .checkpoint_store import DynamoCheckpointStore
from .config import Settings
from .credentials import credentials_source
from .forwarder import Forwarder
from .outputs import output_policy
from .pacing import Pacer
from .planner import OutputPolicy
from .pushed import PushedLedger
from .sinks import PrefixedSink, Sink
from .sinks.registry import BY_NAME
from .source import LogSource
from .store import CheckpointStore
from .watch_list import DynamoWatchList

if TYPE_CHECKING:
    from .requeue import Requeue
    from .rule_packs import PackSource, RulePacks


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Overrides:
    """What a caller builds differently; everything else is the function's own."""

    store: CheckpointStore | None = None  # instead of the DynamoDB checkpoint table
    sinks: Callable[[list[Sink]], list[Sink]] = field(default=_same)  # wraps the destinations
    source: Callable[[Auth0Client], LogSource] = field(default=_same)  # wraps the Auth0 client
    output: Callable[[OutputPolicy], OutputPolicy] = field(default=_same)
    clients: ClientFactory | None = None  # boto3 clients (default: from the session)
    look_up_users: bool = True  # ask Auth0 whether it knows each watched id (user_lookup.py)
    pushed: PushedLedger | None = None  # instead of the pushed-events table
    rule_packs: PackSource | None = None  # instead of the rule packs table


@dataclass(frozen=True)
class Runtime:
    """What the handler's invocations share: settings, clients, forwarder, store and sinks."""

    settings: Settings
    forwarder: Forwarder
    store: CheckpointStore
    watch_list: DynamoWatchList | None = None
    sinks: tuple[Sink, ...] = ()
    # The active detection plan: the default pack and the installed ones (None: no rule runs).
    rule_packs: RulePacks | None = None
    # The real-time queue, for what a push hands back (None: not the real-time function's).
    requeue: Requeue | None = None


def build_runtime(
    settings: Settings,
    *,
    clock: Callable[[], float] = time.time,
    session: boto3.session.Session | None = None,
    http: httpx.Client | None = None,
    key_prefix: str = "",
    overrides: Overrides = Overrides(),
) -> Runtime:
    """Everything an invocation needs, built once per container. Tests and local runs may pass
    their own clock, boto3 session and HTTP client.

    `key_prefix` (multi-tenant mode: the tenant's `<domain>#`) starts every checkpoint key,
    stream name and S3 user segment, so tenants sharing the table and destinations stay apart.
    """
    client = overrides.clients or session_clients(session)
    store: CheckpointStore
    watch_list = None
    if overrides.store is not None:
        store = overrides.store
    else:
        dynamodb = client("dynamodb", AWS_CLIENT_CONFIG)
        store = DynamoCheckpointStore(
            settings.checkpoint_table, client=dynamodb, key_prefix=key_prefix
        )
        # The watch list table names users of one tenant: with many tenants, each one's watch
        # list is in the tenants document (or its prefixed checkpoint items).
        if settings.watch_table and not key_prefix:
            watch_list = DynamoWatchList(settings.watch_table, dynamodb)
    sinks = destinations(settings, client)
    if key_prefix:
        sinks = [PrefixedSink(sink, key_prefix) for sink in sinks]
    sinks = overrides.sinks(sinks)
    secrets = secrets_client(settings, client)
    auth0 = auth0_client(settings, secrets, http)
    pushed = None
    if settings.pushed_events_table and not key_prefix:
        # One tenant only: the real-time path's partner source is one tenant's. Imported here:
        # a stack without the real-time path has no use for the table's adapter.
        from .pushed_store import DynamoPushedLedger

        pushed = DynamoPushedLedger(
            settings.pushed_events_table, client("dynamodb", AWS_CLIENT_CONFIG)
        )
    # The active detection plan's provider (rule_packs.py): the one place the detection path
    # takes its plan from, the shipped default pack when no pack is installed.
    packs = rule_packs(settings, client, clock, overrides.rule_packs)
    forwarder = Forwarder(
        settings=settings,
        source=overrides.source(auth0),
        store=store,
        sinks=sinks,
        clock=clock,
        output=overrides.output(output_policy(settings, secrets, packs.plan if packs else None)),
        directory=auth0 if overrides.look_up_users else None,
        pushed=overrides.pushed if overrides.pushed is not None else pushed,
    )
    requeue = None
    if settings.realtime_queue_url:
        # Imported here, as the pushed-events table's adapter: the real-time function's alone.
        from .requeue import REQUEUE_CLIENT_CONFIG, Requeue

        queue_url = settings.realtime_queue_url
        requeue = Requeue(queue_url, lambda: client("sqs", REQUEUE_CLIENT_CONFIG))
    return Runtime(settings, forwarder, store, watch_list, tuple(sinks), packs, requeue)


def rule_packs(
    settings: Settings,
    client: ClientFactory,
    clock: Callable[[], float],
    source: PackSource | None = None,
) -> RulePacks | None:
    """The provider of the active plan: the shipped default pack (tuned by the DETECTION_*
    settings), and the packs installed in RULE_PACKS_TABLE when it is set. None when no rule
    runs: the engine is imported only then, so a cold start that does not use it pays nothing."""
    detections = settings.output.detections
    if detections is None:
        return None
    from .detections import default_plan
    from .rule_packs import DynamoPackStore, RulePacks

    if source is None and settings.rule_packs_table:
        source = DynamoPackStore(settings.rule_packs_table, client("dynamodb", AWS_CLIENT_CONFIG))
    default = functools.partial(default_plan, detections)
    return RulePacks(source, default, settings.rule_packs_max_age_s, clock)


def destinations(settings: Settings, client: ClientFactory) -> list[Sink]:
    """The sinks the settings name (sinks/registry.py builds them), in delivery order."""
    values = settings.destination_settings
    sinks = [BY_NAME[name].build(values, client) for name in settings.destinations]
    output = settings.output
    if output.detections is not None and output.findings_event_bus:
        from .sinks.eventbridge import EventBridgeSink  # only with a findings bus

        events = client("events", AWS_CLIENT_CONFIG)
        # Last: a finding goes out once the destinations hold the events it names.
        sinks.append(EventBridgeSink(output.findings_event_bus, client=events))
    return sinks


def secrets_client(settings: Settings, client: ClientFactory) -> Any:
    """Secrets Manager, when a secret is to be read (the Auth0 credentials, the pseudonym key)."""
    wanted = (settings.credentials_secret and not settings.local_client_id) or (
        settings.output.pii_key_secret
    )
    return client("secretsmanager", IDEMPOTENT_CLIENT_CONFIG) if wanted else None


def auth0_client(settings: Settings, secrets: Any, http: httpx.Client | None = None) -> Auth0Client:
    """The Auth0 Management API client: token handling, retries and pacing."""
    return Auth0Client(
        domain=settings.auth0_domain,
        base_url=settings.auth0_base_url,
        credentials=credentials_source(settings, secrets),
        # One pacer per container: what it learns of the tenant's limit serves every warm run.
        pacer=Pacer(share=settings.rate_limit_share, per_second=settings.rate_limit_per_second),
        http=http,
    )
