"""Shared fixtures: the reference files from ../shared (skipped with a reason when absent)."""

from __future__ import annotations

import json
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
