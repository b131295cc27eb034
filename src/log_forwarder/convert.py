"""Auth0 event → one JSON line, and the forwarder's own records: the whole output format.

The event's own fields stay at the top level exactly as Auth0 sent them, unknown ones included;
everything the forwarder adds lives under the single key `_forwarder`, which Auth0 does not use.
Two options change that, both off by default: chosen fields replaced by keyed pseudonyms
(`PII_FIELDS`), and OCSF events instead of Auth0's (`OUTPUT_FORMAT=ocsf`, of the release
`OCSF_VERSION` names). The forwarder's own records (gap, quarantine, what the detection rules
did not see) keep their format either way; a finding becomes an OCSF Detection Finding (2004),
its record inside.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .detections import Finding, Skipped, finding_record, skipped_record
from .event_types import describe
from .events import LogEvent, iso_ms
from .ocsf_versions import DETECTION_FINDING, OcsfVersion
from .records import Gap, OutputLine, batch_id_for

if TYPE_CHECKING:  # built only when pseudonyms are asked for (outputs.py)
    from .pseudonymise import Pseudonymiser

FORWARDER_KEY = "_forwarder"
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class ConvertContext:
    """What converting an event needs to know beyond the event: tenant, user, time and source."""

    tenant: str
    watched_user_id: str
    forwarded_at_ms: int
    # Which Auth0 endpoint returned the event: "user_logs", "logs_search", "logs_stream" or
    # "log_by_id" (read_back.py).
    source: str
    ocsf: OcsfVersion | None = None  # None: the Auth0 format
    pseudonymiser: Pseudonymiser | None = None


def event_line(event: LogEvent, context: ConvertContext) -> OutputLine:
    raw = event.raw if context.pseudonymiser is None else context.pseudonymiser.apply(event.raw)
    if context.ocsf is not None:
        from .ocsf import to_ocsf  # the mapping's tables, only where OCSF is written

        ocsf = to_ocsf(
            raw,
            tenant=context.tenant,
            watched_user_id=context.watched_user_id,
            version=context.ocsf,
        )
        return OutputLine(timestamp_ms=event.date_ms, line=_dumps(ocsf), log_id=event.log_id)
    event_type = describe(raw.get("type"))
    added: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "tenant": context.tenant,
        "watched_user_id": context.watched_user_id,
        "forwarded_at": iso_ms(context.forwarded_at_ms),
        "type_name": event_type.name,
        "severity": event_type.severity,
        "source": context.source,
    }
    if FORWARDER_KEY in raw:
        # Auth0 never sent this key so far; if it ever does, keep its value rather than drop it.
        added["auth0_value"] = raw[FORWARDER_KEY]
    record = {**raw, FORWARDER_KEY: added}
    return OutputLine(timestamp_ms=event.date_ms, line=_dumps(record), log_id=event.log_id)


def gap_line(gap: Gap, context: ConvertContext) -> OutputLine:
    """A record that says, in the destinations themselves, which events could not be forwarded.

    Stamped with the moment it was found (`context.forwarded_at_ms`).
    """
    detected_at_ms = context.forwarded_at_ms
    record = {
        FORWARDER_KEY: {
            "format": FORMAT_VERSION,
            "record_type": "gap",
            "tenant": context.tenant,
            "watched_user_id": context.watched_user_id,
            "from": iso_ms(gap.from_ms),
            "to": iso_ms(gap.to_ms),
            "reason": gap.reason,
            "detected_at": iso_ms(detected_at_ms),
        }
    }
    if gap.log_ids:
        record[FORWARDER_KEY]["log_ids"] = list(gap.log_ids)
    return OutputLine(timestamp_ms=detected_at_ms, line=_dumps(record), log_id=None)


def quarantine_digest(raw: object) -> str:
    """A short, stable digest of an entry as Auth0 returned it (to record each one once)."""
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


def finding_line(finding: Finding, context: ConvertContext) -> OutputLine:
    """A detection's finding as a record, stamped when it was found. Its key is the finding id,
    so a destination that already holds it (an interrupted run wrote it) is not given it twice."""
    record = finding_record(finding, tenant=context.tenant, detected_at_ms=context.forwarded_at_ms)
    if context.pseudonymiser is not None:
        body = record[FORWARDER_KEY]
        body["details"] = context.pseudonymiser.apply(body["details"])
    if context.ocsf is not None:
        from .ocsf import detection_finding

        record = detection_finding(
            finding,
            record[FORWARDER_KEY],
            tenant=context.tenant,
            detected_at_ms=context.forwarded_at_ms,
            version=context.ocsf,
        )
    return OutputLine(
        timestamp_ms=context.forwarded_at_ms,
        line=_dumps(record),
        record_key=f"finding:{finding.finding_id}",
    )


def skipped_line(skipped: Skipped, context: ConvertContext) -> OutputLine:
    """Events a detection rule did not see whole, as a record; keyed like a finding, so that a
    redelivery does not write it twice."""
    record = skipped_record(
        skipped,
        tenant=context.tenant,
        watched_user_id=context.watched_user_id,
        detected_at_ms=context.forwarded_at_ms,
    )
    return OutputLine(
        timestamp_ms=context.forwarded_at_ms, line=_dumps(record), record_key=skipped_key(skipped)
    )


def skipped_key(skipped: Skipped) -> str:
    return _skipped_key(skipped.rule_id, skipped.reason, skipped.log_ids)


def _skipped_key(rule_id: str, reason: str, log_ids: Iterable[str]) -> str:
    return f"detection_skipped:{rule_id}:{reason}:{batch_id_for(log_ids)}"


def quarantine_line(raw: object, reason: str, context: ConvertContext) -> OutputLine:
    """A record carrying an entry that cannot be forwarded as an event, exactly as returned.

    `raw` holds the entry as JSON text: it may be anything (null, a string, an object without a
    date), and a query engine reading the records needs one type for the field.
    """
    if context.pseudonymiser is not None and isinstance(raw, dict):
        raw = context.pseudonymiser.apply(raw)
    text = json.dumps(raw, ensure_ascii=False, separators=(",", ":"), default=repr)
    record = {
        FORWARDER_KEY: {
            "format": FORMAT_VERSION,
            "record_type": "quarantine",
            "tenant": context.tenant,
            "watched_user_id": context.watched_user_id,
            "reason": reason,
            "raw": text,
            "entry_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
            "detected_at": iso_ms(context.forwarded_at_ms),
        }
    }
    return OutputLine(timestamp_ms=context.forwarded_at_ms, line=_dumps(record), log_id=None)


def oversized_marker(item: OutputLine) -> OutputLine:
    """A small stand-in for a line a destination cannot take, naming the event it replaces."""
    raw = item.line.encode("utf-8")
    try:
        original = json.loads(item.line)
    except ValueError:
        original = None
    fields = original if isinstance(original, dict) else {}

    def text_field(name: str) -> str | None:
        value = fields.get(name)
        return value if isinstance(value, str) else None

    marker = {
        "log_id": text_field("log_id") or item.log_id,
        "date": text_field("date"),
        "type": text_field("type"),
        FORWARDER_KEY: {
            "oversized": True,
            "original_bytes": len(raw),
            "sha256": hashlib.sha256(raw).hexdigest(),
        },
    }
    return replace(item, line=_dumps(marker))


def record_key(line: str) -> str | None:
    """What identifies a stored line, as OutputLine.key does: the Auth0 log_id of an event (in
    OCSF, `metadata.uid`), the finding id of a finding; None for other records."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    log_id = record.get("log_id")
    if record.get("class_uid") == DETECTION_FINDING and isinstance(record.get("unmapped"), dict):
        record = record["unmapped"]  # a finding in OCSF: the forwarder's record inside
    elif log_id is None and isinstance(record.get("metadata"), dict) and "class_uid" in record:
        log_id = record["metadata"].get("uid")
    if isinstance(log_id, str):
        return log_id
    added = record.get(FORWARDER_KEY)
    if not isinstance(added, dict):
        return None
    if isinstance(added.get("finding_id"), str):
        return f"finding:{added['finding_id']}"
    if added.get("record_type") == "detection_skipped":
        log_ids = added.get("log_ids")
        if isinstance(log_ids, list) and all(isinstance(i, str) for i in log_ids):
            return _skipped_key(str(added.get("rule_id")), str(added.get("reason")), log_ids)
    return None


def _dumps(record: dict[str, Any]) -> str:
    # Compact and UTF-8: one object per line, sized as CloudWatch counts it. json escapes any
    # newline inside a value, so a line can never split.
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (JSON allows "\ud800", UTF-8 cannot carry it): escaped as JSON
        # does, so the value stays exactly what Auth0 sent and the line can be written.
        return json.dumps(record, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text
