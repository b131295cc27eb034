"""`run --local DIR`: the function's forwarding core (Forwarder, planner, executor) from a laptop,
against a real tenant, with DIR's SQLite checkpoints and directory sink instead of AWS.

A second run resumes from DIR's checkpoints, like the next scheduled run would; so does a run
after a Ctrl-C or a kill (DIR's lock says no other run is delivering, so leases left by a killed
run are given up at once and its pending batch is redelivered). Users named on the command line
join DIR's watch list: DIR is then the record of whom it forwards, for the next run and for
`status --local DIR`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console

from log_forwarder.exceptions import ConfigError
from log_forwarder.report import RunReport
from log_forwarder.runtime import Overrides, build_runtime

from .environment import Environment
from .local import LocalDir
from .progress import (
    Counters,
    CountingSink,
    CountingSource,
    ProgressDisplay,
    Stopper,
    check_time_limit,
    watch_thread,
)


@dataclass(frozen=True)
class LocalRun:
    report: RunReport
    interrupted: bool  # stopped by Ctrl-C: what was under way was committed, the rest is left
    added: list[str]  # users named that DIR's watch list did not hold before


def run_local(
    env: Environment, directory: Path, users: Sequence[str], console: Console, limit_s: float
) -> LocalRun:
    # Nothing goes to AWS: the table and destinations of the function's variables are ignored.
    settings = env.settings(aws=False)
    check_time_limit(limit_s, settings.time_margin_ms)
    with LocalDir(directory, settings.setting("S3_PREFIX") or "") as local:
        assert local.store is not None
        watched = list(users or settings.watched_user_ids or local.store.watched_users())
        if not watched:
            raise ConfigError(
                "no users to forward: name them (run --local DIR USER…), set WATCHED_USER_IDS, "
                "or add them with `watch add --local DIR USER`"
            )
        added = [user for user in users if local.store.add_watch(user)]
        freed = local.store.release_leases()
        if freed:
            console.print(f"Resuming an interrupted run: {len(freed)} user(s) had pending batches.")
        counters = Counters()
        forwarder = build_runtime(
            replace(
                settings,
                checkpoint_table=str(local.store.path),
                output=replace(settings.output, findings_event_bus=None),
            ),
            overrides=Overrides(
                store=local.store,
                # Findings, filters, pseudonyms and OCSF as the deployed function would write
                # them (findings stay in the directory: there is no EventBridge here).
                sinks=lambda _none: [CountingSink(local.sink, counters)],
                source=lambda auth0: CountingSource(auth0, counters),
                clients=env.aws_client,
            ),
        ).forwarder
        stopper = Stopper(limit_s, settings.time_margin_ms)
        description = f"run --local ({len(watched)} users)"
        with stopper.on_interrupt(console), ProgressDisplay(console, description, None) as bar:
            report: RunReport = watch_thread(
                lambda: forwarder.run(watched, remaining_ms=stopper.remaining_ms),
                lambda: bar.update(counters),
            )
            bar.update(counters, final=True)
        return LocalRun(report, stopper.stopped, added)
