"""What the configuration asks to be written besides the events: the one place the Lambda and
the CLI build it from."""

from __future__ import annotations

from typing import Any

from .config import Settings
from .credentials import pseudonym_key
from .detections import Detections, PlanSource
from .planner import OutputPolicy


def output_policy(
    settings: Settings, secrets: Any, plans: PlanSource | None = None
) -> OutputPolicy:
    """What the configuration asks to be written besides the events; reads the pseudonym key
    (from `secrets`, a Secrets Manager client) when pseudonyms are asked for. `plans`: where the
    detection rules come from (default: the pack the function ships with)."""
    output = settings.output
    pseudonymiser = None
    if output.pii_key_secret and output.pii_paths:
        # Imported here: a configuration without pseudonyms (the default) never loads it.
        from .pseudonymise import Pseudonymiser

        key = pseudonym_key(output.pii_key_secret, secrets)
        pseudonymiser = Pseudonymiser(key, output.pii_paths)
    return OutputPolicy(
        ocsf=output.ocsf_version if output.format == "ocsf" else None,
        keep=output.events,
        pseudonymiser=pseudonymiser,
        detections=None if output.detections is None else Detections(output.detections, plans),
    )
