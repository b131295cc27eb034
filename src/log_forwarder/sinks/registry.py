"""The destinations DESTINATIONS may name, declared once.

Each entry gives a destination's name (as DESTINATIONS spells it), the environment variables it
reads (config.py validates them), how its sink is built (runtime.py) and what a redelivery does
there, the batch an interrupted run may have delivered in part (docs/guarantees.md says it per
destination):

- SKIPS_HELD: the destination is read back and only what it lacks is written (CloudWatch reads
  the stream over the batch; S3 never overwrites the batch's keys and writes only what a partial
  object lacks): exactly once;
- MAY_REPEAT: it cannot be read back, so what the interrupted run delivered is delivered again:
  at least once, and each line so sent is counted (DeliveryReport.repeated, PossibleRepeats).

What reads it: config.py (DESTINATIONS and each destination's settings), runtime.py (the
sinks), report.py (EventsDelivered_<name>), the CLI (init's question; backfill, which leaves
out a destination it cannot check) and the template, whose Destinations parameter allows
exactly `combinations()` and whose `template_condition` of each entry holds for the
combinations naming it (tests/unit/test_template.py). Adding a destination is a module under
sinks/, an entry here, and the template's resources and IAM.

Nothing here does I/O, nor imports what does: each entry names its adapter module, whose
`build(settings, client)` makes the sink, and which is imported only when a sink is built. So
config.py, which every function imports, reaches no adapter: the multi-tenant scheduler, whose
role can call none of them, imports none (test_template's import walk checks what each
function's code can call against its role; it follows runtime.py to every adapter named here).
"""

from __future__ import annotations

import importlib
import itertools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, cast

from log_forwarder.exceptions import ConfigError

if TYPE_CHECKING:
    from log_forwarder.aws_errors import ClientFactory
    from log_forwarder.sinks import Sink


class Redelivery(Enum):
    """What a destination does with a batch an interrupted run may have delivered in part."""

    SKIPS_HELD = "skips what it already holds"
    MAY_REPEAT = "may repeat"


@dataclass(frozen=True, slots=True)
class Setting:
    """An environment variable a destination reads."""

    variable: str
    meaning: str  # what it names, for the error that asks for it
    default: str | None = None  # None: required when the destination is chosen
    normalise: Callable[[str], str] | None = None  # the value as the destination uses it


# (the settings' values by variable, the boto3 clients) → the destination's sink
Factory = Callable[[Mapping[str, str], "ClientFactory"], "Sink"]


@dataclass(frozen=True, slots=True)
class Destination:
    """One destination DESTINATIONS can name: its settings, its redelivery and its adapter."""

    name: str  # as DESTINATIONS names it, and EventsDelivered_<name>
    title: str  # as the documentation calls it
    settings: tuple[Setting, ...]
    redelivery: Redelivery
    adapter: str  # the module whose `build` makes its sink
    template_condition: str  # the template's condition: the stack delivers there

    def build(self, settings: Mapping[str, str], client: ClientFactory) -> Sink:
        """The destination's sink, from its settings' values (config.Settings holds them)."""
        factory = cast(Factory, importlib.import_module(self.adapter).build)
        return factory(settings, client)


def _prefix(raw: str) -> str:
    """'' stays '' (no prefix); anything else has no leading '/' and ends with one."""
    prefix = raw.strip().lstrip("/")
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


# Firehose's rule for a stream name (its API reference: 1 to 64, [a-zA-Z0-9_.-]+).
_FIREHOSE_STREAM_NAME = re.compile(r"[a-zA-Z0-9_.-]{1,64}")


def _firehose_stream_name(raw: str) -> str:
    """The name as given; ConfigError for anything Firehose would refuse (an ARN, say), before
    the first event is read rather than at its first delivery."""
    if not _FIREHOSE_STREAM_NAME.fullmatch(raw):
        raise ConfigError(
            f"FIREHOSE_STREAM_NAME={raw!r} is not a Firehose stream name: 1 to 64 letters, "
            "digits, '_', '.' or '-' (the stream's name, not its ARN)"
        )
    return raw


# In delivery order: a finding (EventBridge, not a destination of DESTINATIONS) goes out last.
REGISTRY: tuple[Destination, ...] = (
    Destination(
        name="cloudwatch",
        title="CloudWatch Logs",
        settings=(Setting("LOG_GROUP_NAME", "the log group the events are written to"),),
        redelivery=Redelivery.SKIPS_HELD,
        adapter="log_forwarder.sinks.cloudwatch",
        template_condition="UseCloudWatch",
    ),
    Destination(
        name="s3",
        title="S3",
        settings=(
            Setting("S3_BUCKET", "the bucket the events are written to"),
            Setting("S3_PREFIX", "the key prefix", default="auth0-logs/", normalise=_prefix),
        ),
        redelivery=Redelivery.SKIPS_HELD,
        adapter="log_forwarder.sinks.s3",
        template_condition="UseS3",
    ),
    Destination(
        name="firehose",
        title="Kinesis Data Firehose",
        settings=(
            Setting(
                "FIREHOSE_STREAM_NAME",
                "the Firehose stream the events are put to",
                normalise=_firehose_stream_name,
            ),
        ),
        redelivery=Redelivery.MAY_REPEAT,
        adapter="log_forwarder.sinks.firehose",
        template_condition="UseFirehose",
    ),
)
BY_NAME: Mapping[str, Destination] = {destination.name: destination for destination in REGISTRY}
NAMES: tuple[str, ...] = tuple(BY_NAME)


def combinations() -> list[str]:
    """Every value DESTINATIONS may take as the template spells it: each non-empty choice, in
    the registry's order, fewest first."""
    return [
        ",".join(chosen)
        for count in range(1, len(NAMES) + 1)
        for chosen in itertools.combinations(NAMES, count)
    ]


def setting_variables() -> tuple[str, ...]:
    """Every variable a destination reads (each listed in the README and the template)."""
    return tuple(s.variable for destination in REGISTRY for s in destination.settings)
