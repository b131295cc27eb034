"""Rule packs: compiled Sigma plans an operator installs, read by the function without a redeploy.

    store (RulePacksTable)  one item per pack: the plan, gzipped, with its digest and `enabled`;
                            one item `#disabled`: the ids of the rules turned off
    RulePacks()             the active plan: the shipped default pack + every enabled pack −
                            the disabled rules, read again at most every max_age seconds

The CLI (`auth0-log-forwarder rules ...`, cli/rules.py) compiles and writes packs; the function
only reads them (its role may Scan the table, nothing else). docs/sigma.md, "Rule packs", says why
the store is a DynamoDB table of its own and not SSM, AppConfig or S3.

What is read is verified before it runs: the item's layout version, the SHA-256 of the plan as
the CLI wrote it, a size bound on what it inflates to, and the plan's own format and version
(`sigma_plan.load_plan`). A pack that fails any of them is left out and named in `problems`
(the run's report and the RulePackErrors metric say so); every other pack still runs. A store
that cannot be read keeps the plan last read (or the default pack alone): a bad pack or a
throttled table never takes the function down.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import re
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

from .aws_errors import call_aws
from .exceptions import OutOfTime, RulePackError
from .retry import AWS_ATTEMPT_S, UNLIMITED, Attempts, Deadline, RetryPolicy
from .sigma_plan import Plan, load_plan, merge

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

logger = logging.getLogger(__name__)

ITEM_LAYOUT: Final = 1  # the layout of a pack item (below); the plan inside has its own version
DEFAULT_PACK: Final = "default"  # the pack that ships with the function: never stored
DISABLED_KEY: Final = "#disabled"  # not a pack name: PACK_NAME cannot start with '#'
PACK_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
# What a stored plan may inflate to. An item holds 400 KB; the catalog's plan is 25 KB (5 KB
# gzipped): 4 MiB is 160 catalogs, and bounds a gzip bomb written into the table by hand.
MAX_PLAN_BYTES: Final = 4 * 1024 * 1024
DEFAULT_MAX_AGE_S: Final = 300  # as Powertools' parameters cache, and the secrets here
# A store that could not be read is tried again this soon (or at max_age, if shorter).
FAILED_READ_RETRY_S: Final = 60.0
PACK_READ_RETRY = RetryPolicy(attempts=3, base_s=0.1, cap_s=1.0, attempt_s=AWS_ATTEMPT_S)


@dataclass(frozen=True, slots=True)
class StoredPack:
    """One pack item as read from the store, not yet verified."""

    name: str
    enabled: bool
    sha256: str  # of the plan JSON as written (before gzip)
    body: bytes  # the gzipped plan JSON
    layout: int
    installed_at: str = ""
    rules: int = 0  # as the CLI counted them (shown by `rules list`; never trusted)


@dataclass(frozen=True, slots=True)
class StoredPacks:
    """The whole store: its packs and the ids of disabled rules."""

    packs: tuple[StoredPack, ...] = ()
    disabled: frozenset[str] = frozenset()
    unreadable: tuple[PackProblem, ...] = ()  # items that are not packs at all


@dataclass(frozen=True, slots=True)
class PackProblem:
    """A pack that does not run, and why (no plan text, no secret: safe to log and report)."""

    pack: str
    reason: str

    def __str__(self) -> str:
        return f"rule pack {self.pack!r}: {self.reason}"


class PackSource(Protocol):
    """Where installed packs are read from (the DynamoDB table; a fake in tests)."""

    def read(self, deadline: Deadline | None = None) -> StoredPacks: ...


@dataclass(frozen=True, slots=True)
class ActivePlan:
    """The plan a run evaluates and how it was put together."""

    plan: Plan
    packs: tuple[str, ...]  # merged, the default first
    problems: tuple[PackProblem, ...] = ()
    disabled: frozenset[str] = frozenset()

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule_packs": list(self.packs),
            "rules": len(self.plan.rules),
            "correlations": len(self.plan.correlations),
            "disabled_rules": len(self.disabled),
            "rule_pack_errors": [str(problem) for problem in self.problems],
        }


# -- the item, both ways -----------------------------------------------------------------------


def plan_bytes(document: Mapping[str, Any]) -> bytes:
    """The plan JSON as stored: canonical, so one plan always has one digest."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def pack_item(
    name: str, document: Mapping[str, Any], *, installed_at: str, enabled: bool = True
) -> dict[str, Any]:
    """The DynamoDB item of a pack (the CLI writes it)."""
    check_pack_name(name)
    text = plan_bytes(document)
    rules = document.get("rules")
    return {
        "pack": {"S": name},
        "layout": {"N": str(ITEM_LAYOUT)},
        "plan": {"B": gzip.compress(text, mtime=0)},
        "sha256": {"S": hashlib.sha256(text).hexdigest()},
        "enabled": {"BOOL": enabled},
        "rules": {"N": str(len(rules) if isinstance(rules, list) else 0)},
        "installed_at": {"S": installed_at},
    }


def check_pack_name(name: str) -> str:
    if not PACK_NAME.fullmatch(name):
        raise RulePackError(
            f"pack name {name!r} is not allowed: 1 to 64 of a-z, 0-9, '_' and '-', starting "
            "with a letter or digit (e.g. auth0-catalog)"
        )
    if name == DEFAULT_PACK:
        raise RulePackError(f"pack name {name!r} is the pack that ships with the function")
    return name


def read_item(item: Mapping[str, Any]) -> StoredPack:
    """A pack item as stored; RulePackError naming what is missing."""
    name = str(_attr(item, "pack", "S") or "?")
    try:
        layout = int(_attr(item, "layout", "N") or "0")
    except ValueError:
        layout = 0
    body = _attr(item, "plan", "B")
    digest = _attr(item, "sha256", "S")
    if not isinstance(body, bytes | bytearray) or not isinstance(digest, str):
        raise RulePackError("the item has no plan (binary) or no sha256 (text)")
    enabled = item.get("enabled", {}).get("BOOL")
    try:
        rules = int(_attr(item, "rules", "N") or "0")
    except ValueError:
        rules = 0
    return StoredPack(
        name=name,
        enabled=enabled is not False,
        sha256=digest,
        body=bytes(body),
        layout=layout,
        installed_at=str(_attr(item, "installed_at", "S") or ""),
        rules=rules,
    )


def _attr(item: Mapping[str, Any], name: str, kind: str) -> Any:
    value = item.get(name)
    return value.get(kind) if isinstance(value, Mapping) else None


def load_stored(pack: StoredPack) -> Plan:
    """The verified plan of a stored pack; RulePackError saying which check it failed."""
    if pack.layout != ITEM_LAYOUT:
        raise RulePackError(
            f"item layout {pack.layout} is not the one this release reads ({ITEM_LAYOUT}): "
            "install it again with this release's CLI"
        )
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip
    try:
        text = inflater.decompress(pack.body, MAX_PLAN_BYTES + 1)
    except zlib.error as error:
        raise RulePackError(f"its plan is not gzip: {error}") from None
    if len(text) > MAX_PLAN_BYTES or inflater.unconsumed_tail:
        raise RulePackError(f"its plan inflates past {MAX_PLAN_BYTES} bytes")
    if not inflater.eof:
        raise RulePackError("its plan is cut short (gzip stream incomplete)")
    if hashlib.sha256(text).hexdigest() != pack.sha256:
        raise RulePackError(
            "its plan does not match its sha256 (changed or damaged since it was installed): "
            "install it again"
        )
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as error:  # RecursionError: nested past the stack
        raise RulePackError(f"its plan is not JSON: {error!r}") from None
    return load_plan(document)


# -- assembling the active plan (pure) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoadedPack:
    """An installed rule pack as loaded: its plan, or the problem that kept it out."""

    name: str
    plan: Plan | None
    problem: str | None = None


def assemble(
    default: Plan, packs: Iterable[LoadedPack], disabled: Iterable[str]
) -> tuple[Plan, tuple[str, ...], tuple[PackProblem, ...]]:
    """The default pack and the packs that loaded, in name order, less the disabled rules. A
    pack naming an id another pack already holds is left out whole, with a problem naming both."""
    chosen: list[tuple[str, Plan]] = [(DEFAULT_PACK, default)]
    owner = dict.fromkeys(default.ids(), DEFAULT_PACK)
    problems: list[PackProblem] = []
    for pack in sorted(packs, key=lambda p: p.name):
        if pack.plan is None:
            problems.append(PackProblem(pack.name, pack.problem or "did not load"))
            continue
        ids = pack.plan.ids()
        taken = next((i for i in ids if i in owner), None)
        if taken is not None:
            problems.append(
                PackProblem(
                    pack.name,
                    f"rule {taken} is also in pack {owner[taken]!r}; a rule id may be in one "
                    "installed pack only (remove one of them)",
                )
            )
            continue
        owner.update(dict.fromkeys(ids, pack.name))
        chosen.append((pack.name, pack.plan))
    plan = merge([p for _, p in chosen], frozenset(disabled))
    return plan, tuple(name for name, _ in chosen), tuple(problems)


# -- the function's provider -----------------------------------------------------------------


@dataclass
class RulePacks:
    """`provider()` -> the active Plan, read from `source` again once `max_age_s` has passed.

    `default()` gives the pack that ships with the function. With no source (RULE_PACKS_TABLE
    unset) the default pack is the whole plan.
    """

    source: PackSource | None
    default: Callable[[], Plan]
    max_age_s: float = DEFAULT_MAX_AGE_S
    clock: Callable[[], float] = time.time
    _active: ActivePlan | None = field(default=None, init=False, repr=False)
    _next_read: float = field(default=float("-inf"), init=False, repr=False)
    # Plans already verified and loaded, by digest: an unchanged pack is not parsed again.
    _loaded: dict[str, Plan] = field(default_factory=dict, init=False, repr=False)
    # What the active plan was made of: a read that finds the same gives the same Plan object,
    # so whatever a caller derived from it (detections.py's split of it) stays valid.
    _made_of: tuple[Any, ...] | None = field(default=None, init=False, repr=False)

    def __call__(self) -> Plan:
        return self.active().plan

    def plan(self, deadline: Deadline | None = None) -> Plan:
        """The active plan, a read of the store kept within `deadline` (the detection path's
        provider, detections.PlanSource)."""
        return self.active(deadline).plan

    def active(self, deadline: Deadline | None = None) -> ActivePlan:
        now = self.clock()
        if self._active is None or now >= self._next_read:
            self._active = self._read(deadline)
            again = FAILED_READ_RETRY_S if self._store_failed(self._active) else self.max_age_s
            self._next_read = now + min(again, self.max_age_s)
        return self._active

    @staticmethod
    def _store_failed(active: ActivePlan) -> bool:
        return any(problem.pack == "(store)" for problem in active.problems)

    def _read(self, deadline: Deadline | None) -> ActivePlan:
        problems: list[PackProblem] = []
        try:
            default = self.default()
        except RulePackError as error:  # a release's own pack: a bug, but never fatal here
            default = merge(())
            problems.append(PackProblem(DEFAULT_PACK, str(error)))
        if self.source is None:
            return ActivePlan(default, (DEFAULT_PACK,), tuple(problems))
        try:
            stored = self.source.read(deadline)
        except (RulePackError, OutOfTime) as error:
            problems.append(PackProblem("(store)", f"{error}; the rules last read still run"))
            logger.warning("Rule packs not read", extra={"reason": str(error)})
            kept = self._active
            if kept is None:
                return ActivePlan(default, (DEFAULT_PACK,), tuple(problems))
            return ActivePlan(kept.plan, kept.packs, tuple(problems), kept.disabled)
        enabled = [pack for pack in stored.packs if pack.enabled]
        made_of = (
            id(default),
            tuple(sorted((p.name, p.sha256) for p in enabled)),
            stored.disabled,
        )
        loaded = [self._load(pack) for pack in enabled]
        plan, names, assembled = assemble(default, loaded, stored.disabled)
        if self._active is not None and made_of == self._made_of:
            plan = self._active.plan
        self._made_of = made_of
        problems.extend(stored.unreadable)
        problems.extend(assembled)
        for problem in problems:
            logger.warning(
                "Rule pack left out", extra={"pack": problem.pack, "why": problem.reason}
            )
        live = {pack.sha256 for pack in stored.packs}
        self._loaded = {digest: p for digest, p in self._loaded.items() if digest in live}
        return ActivePlan(plan, names, tuple(problems), stored.disabled)

    def _load(self, pack: StoredPack) -> LoadedPack:
        cached = self._loaded.get(pack.sha256)
        if cached is not None:
            return LoadedPack(pack.name, cached)
        try:
            plan = load_stored(pack)
        except RulePackError as error:
            return LoadedPack(pack.name, None, str(error))
        self._loaded[pack.sha256] = plan
        return LoadedPack(pack.name, plan)


# -- the DynamoDB store ------------------------------------------------------------------------


class DynamoPackStore:
    """The rule packs table, read with one paginated Scan (a handful of small items)."""

    def __init__(
        self,
        table_name: str,
        client: DynamoDBClient,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.table_name = table_name
        self._client = client
        self._sleep = sleep

    def items(self, deadline: Deadline | None = None) -> list[dict[str, Any]]:
        """Every item of the table, as DynamoDB returns them."""
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TableName": self.table_name, "ConsistentRead": True}
        while True:
            attempts = Attempts(PACK_READ_RETRY, sleep=self._sleep, deadline=deadline or UNLIMITED)
            response = call_aws(
                lambda: self._client.scan(**kwargs),
                what=f"DynamoDB Scan on rule packs table {self.table_name!r}",
                error=RulePackError,
                attempts=attempts,
            )
            items.extend(response.get("Items", []))
            last_key = response.get("LastEvaluatedKey")
            if not last_key:
                return items
            kwargs["ExclusiveStartKey"] = last_key

    def read(self, deadline: Deadline | None = None) -> StoredPacks:
        return read_store(self.items(deadline))


def read_store(items: Sequence[Mapping[str, Any]]) -> StoredPacks:
    """The store's items as packs and disabled ids; an item that is not a pack is a problem."""
    packs: list[StoredPack] = []
    disabled: frozenset[str] = frozenset()
    unreadable: list[PackProblem] = []
    for item in items:
        key = _attr(item, "pack", "S")
        if key == DISABLED_KEY:
            ids = _attr(item, "rule_ids", "SS")
            disabled = frozenset(ids) if isinstance(ids, list) else frozenset()
            continue
        try:
            packs.append(read_item(item))
        except RulePackError as error:
            unreadable.append(PackProblem(str(key or "?"), str(error)))
    return StoredPacks(tuple(packs), disabled, tuple(unreadable))
