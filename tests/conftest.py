"""Shared fixtures: the reference files from ../shared (skipped with a reason when absent)."""

from __future__ import annotations

import importlib
import json
import pickle
import sys
from pathlib import Path
from typing import Any

import pytest

REFERENCE_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference"
SAMPLE_EVENTS = REFERENCE_DIR / "auth0-sample-events.jsonl"
OPENAPI = REFERENCE_DIR / "auth0-management-logs.openapi.json"


@pytest.fixture(scope="session")
def sample_events() -> list[dict[str, Any]]:
    """The 150 real Auth0 events of the public test corpus, in file order."""
    if not SAMPLE_EVENTS.exists():
        pytest.skip(f"reference events not found at {SAMPLE_EVENTS} (../shared is not checked out)")
    return [
        json.loads(line) for line in SAMPLE_EVENTS.read_text(encoding="utf-8").splitlines() if line
    ]


@pytest.fixture(scope="session")
def openapi() -> dict[str, Any]:
    if not OPENAPI.exists():
        pytest.skip(f"Auth0 OpenAPI extract not found at {OPENAPI} (../shared is not checked out)")
    return json.loads(OPENAPI.read_text(encoding="utf-8"))


# The figures the end-to-end tests record for the summary below. Under pytest-xdist each worker
# fills its own copy, so a worker hands its copy to the controller when it finishes.
_LEDGERS = (
    ("tests.e2e.test_integration", "DELIVERY_LEDGER"),
    ("tests.e2e.test_faults", "FAULT_LEDGER"),
    ("tests.e2e.test_faults", "MARGINS"),
    ("tests.unit.test_ocsf", "OCSF_LEDGER"),
    ("tests.e2e.test_detections_e2e", "DETECTION_LEDGER"),
    ("tests.cli_support", "CLI_LEDGER"),
    ("tests.e2e.test_fanout_integration", "FANOUT_LEDGER"),
)


def pytest_sessionfinish(session: Any) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is None:
        return
    ledgers: dict[str, Any] = {}
    for module_name, name in _LEDGERS:
        module = sys.modules.get(module_name)
        if module is None:
            continue
        value = getattr(module, name)
        if isinstance(value, dict) and name == "OCSF_LEDGER":
            value = {
                corpus: {k: [v[0], set(v[1])] for k, v in rows.items()}
                for corpus, rows in value.items()
            }
        ledgers[f"{module_name}:{name}"] = value
    workeroutput["ledgers"] = pickle.dumps(ledgers)


def pytest_testnodedown(node: Any, error: Any) -> None:
    packed = getattr(node, "workeroutput", {}).get("ledgers")
    if packed is None:
        return
    for key, value in pickle.loads(packed).items():  # noqa: S301 - our own workers wrote it
        module_name, name = key.split(":")
        target = getattr(importlib.import_module(module_name), name)
        if isinstance(target, list):
            target.extend(value)
        elif name == "OCSF_LEDGER":
            for corpus, rows in value.items():
                for class_name, (events, codes) in rows.items():
                    row = target[corpus][class_name]
                    row[0] += events
                    row[1] |= codes
        else:
            target.update(value)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Figures: the fault matrix, OCSF events validated per class, deliveries per end-to-end
    test and destination."""
    _fault_matrix(terminalreporter.write_line)
    _ocsf_summary(terminalreporter.write_line)
    _detections(terminalreporter.write_line)
    _cli_figures(terminalreporter.write_line)
    _fanout_summary(terminalreporter.write_line)
    from tests.e2e.test_integration import DELIVERY_LEDGER

    if not DELIVERY_LEDGER:
        return
    totals: dict[tuple[str, str], list[int]] = {}
    for test, destination, expected, delivered, missing, repeated in DELIVERY_LEDGER:
        row = totals.setdefault((test, destination), [0, 0, 0, 0])
        for i, value in enumerate((expected, delivered, missing, repeated)):
            row[i] += value
    write = terminalreporter.write_line
    write("")
    write("end-to-end deliveries (expected / delivered / missing / duplicated):")
    for (test, destination), (expected, delivered, missing, repeated) in sorted(totals.items()):
        write(
            f"  {test[:70]:70} {destination:10} {expected:6} {delivered:6} {missing:3} {repeated:3}"
        )


def _fault_matrix(write: Any) -> None:
    from tests.e2e.test_faults import FAULT_LEDGER, MARGINS

    if FAULT_LEDGER:
        write("")
        write("fault matrix (expected / delivered / missing / duplicated / only in a gap; said):")
        for row in FAULT_LEDGER:
            write(
                f"  {row.scenario[:58]:58} {row.destination:10} {row.expected:5} {row.delivered:5}"
                f" {row.missing:3} {row.duplicated:3} {row.in_gaps:4}  {row.said[:90]}"
            )
    if MARGINS:
        worst = min(MARGINS, key=lambda item: item[1])
        write(f"worst margin before a deadline: {worst[1]:.1f} s ({worst[0]})")


def _ocsf_summary(write: Any) -> None:
    from tests.unit.test_ocsf import OCSF_LEDGER

    if not OCSF_LEDGER:
        return
    write("")
    write("OCSF events validated (events / distinct Auth0 codes) per corpus and class:")
    for corpus, classes in sorted(OCSF_LEDGER.items()):
        for class_name, (events, codes) in sorted(classes.items()):
            write(f"  {corpus[:45]:45} {class_name:26} {events:6} {len(codes):4}")


def _detections(write: Any) -> None:
    from tests.e2e.test_detections_e2e import DETECTION_LEDGER

    if DETECTION_LEDGER:
        write("")
        write("detections end to end (findings per rule: on its sequence / on a near miss):")
        for rule in sorted({rule for rule, _case in DETECTION_LEDGER}):
            fires = DETECTION_LEDGER.get((rule, "fires"), 0)
            quiet = DETECTION_LEDGER.get((rule, "quiet"), 0)
            write(f"  {rule:24} {fires} / {quiet}")


def _cli_figures(write: Any) -> None:
    from tests.cli_support import CLI_LEDGER

    if CLI_LEDGER:
        write("")
        write("CLI, end to end (the console script against the simulator and moto's server):")
        for command, figure, value in CLI_LEDGER:
            write(f"  {command:22} {figure:62} {value}")


def _fanout_summary(write: Any) -> None:
    from tests.e2e.test_fanout_integration import FANOUT_LEDGER

    if not FANOUT_LEDGER:
        return
    last: dict[tuple[str, str, str, str], list[int]] = {}
    for test, tenant, user, destination, *figures in FANOUT_LEDGER:
        last[(test, tenant, user, destination)] = figures  # a test's last check: its end state
    totals: dict[tuple[str, str, str], list[int]] = {}
    for (test, tenant, _user, destination), figures in last.items():
        row = totals.setdefault((test, tenant, destination), [0, 0, 0, 0])
        for i, value in enumerate(figures):
            row[i] += value
    write("")
    write("fan-out deliveries per tenant (expected / delivered / missing / duplicated):")
    for (test, tenant, destination), (expected, delivered, missing, repeated) in sorted(
        totals.items()
    ):
        write(
            f"  {test[:58]:58} {tenant:20} {destination:10} {expected:5} {delivered:5}"
            f" {missing:3} {repeated:3}"
        )
