"""Rule packs: merging plans, verifying what the store holds, and the function's provider
(rule_packs.py). The store itself is exercised on moto's server in tests/e2e/test_rule_packs_e2e.py.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from typing import Any

import pytest

from log_forwarder.cli.sigma_compiler import compile_texts
from log_forwarder.exceptions import RulePackError
from log_forwarder.rule_packs import (
    DEFAULT_PACK,
    DISABLED_KEY,
    MAX_PLAN_BYTES,
    RulePacks,
    StoredPacks,
    check_pack_name,
    load_stored,
    pack_item,
    plan_bytes,
    read_item,
    read_store,
)
from log_forwarder.sigma_plan import Plan, load_plan, merge

FAILED = "11111111-0000-4000-8000-000000000001"
SIGNUP = "11111111-0000-4000-8000-000000000002"
BURST = "11111111-0000-4000-8000-000000000003"
OTHER = "22222222-0000-4000-8000-000000000001"


def rule(rule_id: str, event_type: str, title: str = "a rule") -> str:
    return (
        f"title: {title}\nid: {rule_id}\nname: r{rule_id[-1]}\nlogsource: {{product: auth0}}\n"
        f"level: high\ndetection:\n  selection:\n    data.type: {event_type}\n"
        "  condition: selection\n"
    )


BURST_YAML = (
    rule(FAILED, "fp", "failed login")
    + f"---\ntitle: burst\nid: {BURST}\ncorrelation:\n  type: event_count\n  rules: [r1]\n"
    "  group-by: [data.ip]\n  timespan: 1h\n  condition: {gte: 2}\n"
)


def document(*sources: tuple[str, str]) -> dict[str, Any]:
    compiled = compile_texts(list(sources))
    assert compiled.refused == []
    return json.loads(json.dumps(compiled.plan))


def plan(*sources: tuple[str, str]) -> Plan:
    return load_plan(document(*sources))


def ids(matched: Any) -> list[str]:
    return [r.id for r in matched]


# -- merge ---------------------------------------------------------------------------------------


def test_merge_keeps_every_plan_in_order_and_indexes_them_by_type() -> None:
    first = plan(("a.yml", rule(FAILED, "fp")), ("b.yml", rule(SIGNUP, "ss")))
    second = plan(("c.yml", rule(OTHER, "fp")))
    merged = merge([first, second])
    assert merged.ids() == (FAILED, SIGNUP, OTHER)
    assert ids(merged.matching({"type": "fp"})) == [FAILED, OTHER]
    assert ids(merged.matching({"type": "ss"})) == [SIGNUP]
    assert merged.matching({"type": "s"}) == ()
    assert merge([]).rules == () and merge([]).matching({"type": "fp"}) == ()


def test_a_disabled_rule_no_longer_matches_and_a_correlation_goes_with_its_rule() -> None:
    pack = plan(("burst.yml", BURST_YAML), ("b.yml", rule(SIGNUP, "ss")))
    assert ids(merge([pack], {SIGNUP}).matching({"type": "ss"})) == []
    # The correlation's rule off: the correlation cannot count, and goes too.
    without = merge([pack], {FAILED})
    assert without.correlations == () and without.matching({"type": "fp"}) == ()
    # The correlation off: its rule (generate: false) has nothing left to feed.
    no_burst = merge([pack], {BURST})
    assert no_burst.correlations == () and no_burst.matching({"type": "fp"}) == ()
    assert [c.id for c in merge([pack]).correlations] == [BURST]


def test_two_plans_holding_one_id_do_not_merge() -> None:
    one = plan(("a.yml", rule(FAILED, "fp")))
    with pytest.raises(RulePackError, match=FAILED):
        merge([one, plan(("b.yml", rule(FAILED, "f")))])


# -- the stored item -----------------------------------------------------------------------------


def stored(name: str, doc: dict[str, Any], **changes: Any) -> Any:
    item = pack_item(name, doc, installed_at="2026-12-01T00:00:00Z")
    for key, value in changes.items():
        item[key] = value
    return read_item(item)


def test_a_stored_pack_loads_back_to_the_same_plan() -> None:
    doc = document(("burst.yml", BURST_YAML))
    loaded = load_stored(stored("mine", doc))
    assert loaded.ids() == (FAILED, BURST)
    assert stored("mine", doc).sha256 == hashlib.sha256(plan_bytes(doc)).hexdigest()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"layout": {"N": "2"}}, "item layout 2 is not the one this release reads"),
        ({"plan": {"B": b"not gzip"}}, "not gzip"),
        ({"sha256": {"S": "0" * 64}}, "does not match its sha256"),
        ({"plan": {"B": gzip.compress(b"{}")[:-9]}}, "cut short"),
    ],
)
def test_a_damaged_pack_is_refused_naming_the_check(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(RulePackError, match=reason):
        load_stored(stored("mine", document(("a.yml", rule(FAILED, "fp"))), **change))


def test_a_plan_that_inflates_past_the_bound_is_refused_before_it_is_read() -> None:
    bomb = gzip.compress(b" " * (MAX_PLAN_BYTES + 10))
    with pytest.raises(RulePackError, match="inflates past"):
        load_stored(stored("mine", {}, plan={"B": bomb}))


def test_a_plan_nested_past_the_stack_is_refused_as_not_json() -> None:
    # GIVEN a stored plan whose digest matches but whose JSON is nested 200,000 deep
    text = b"[" * 200_000 + b"]" * 200_000
    change = {"plan": {"B": gzip.compress(text)}, "sha256": {"S": hashlib.sha256(text).hexdigest()}}
    # THEN that pack is refused by name (the others run), not a RecursionError for the run
    with pytest.raises(RulePackError, match="its plan is not JSON: RecursionError"):
        load_stored(stored("mine", {}, **change))


def test_a_plan_of_another_version_is_refused_by_its_own_check() -> None:
    doc = {**document(("a.yml", rule(FAILED, "fp"))), "version": 99}
    text = plan_bytes(doc)
    pack = stored(
        "mine",
        doc,
        plan={"B": gzip.compress(text)},
        sha256={"S": hashlib.sha256(text).hexdigest()},
    )
    with pytest.raises(RulePackError, match="version 99"):
        load_stored(pack)


@pytest.mark.parametrize("name", ["", "Default", "default", "-x", "a b", "#disabled", "x" * 65])
def test_pack_names_are_checked(name: str) -> None:
    with pytest.raises(RulePackError, match="pack name"):
        check_pack_name(name)


def test_the_store_reads_packs_disabled_ids_and_names_items_that_are_not_packs() -> None:
    doc = document(("a.yml", rule(FAILED, "fp")))
    store = read_store(
        [
            pack_item("mine", doc, installed_at="t"),
            {"pack": {"S": DISABLED_KEY}, "rule_ids": {"SS": [FAILED]}},
            {"pack": {"S": "junk"}, "note": {"S": "typed by hand"}},
        ]
    )
    assert [p.name for p in store.packs] == ["mine"]
    assert store.disabled == {FAILED}
    assert [(p.pack, "no plan" in p.reason) for p in store.unreadable] == [("junk", True)]


# -- the provider --------------------------------------------------------------------------------


class FakeStore:
    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items
        self.reads = 0
        self.failing = False

    def read(self, deadline: Any = None) -> StoredPacks:
        self.reads += 1
        if self.failing:
            raise RulePackError("DynamoDB Scan on rule packs table 't' failed: ThrottlingException")
        return read_store(self.items)


class Clock:
    now = 1_000.0

    def __call__(self) -> float:
        return self.now


def provider(store: FakeStore, clock: Clock, default: Plan | None = None) -> RulePacks:
    base = default or plan(("d.yml", rule(OTHER, "s")))
    return RulePacks(store, lambda: base, max_age_s=60, clock=clock)


def test_the_provider_reads_the_store_once_per_max_age_and_then_sees_a_disabled_rule() -> None:
    store = FakeStore(
        [pack_item("mine", document(("a.yml", rule(FAILED, "fp"))), installed_at="t")]
    )
    clock = Clock()
    packs = provider(store, clock)
    assert ids(packs().matching({"type": "fp"})) == [FAILED]
    assert packs.active().packs == (DEFAULT_PACK, "mine")
    store.items.append({"pack": {"S": DISABLED_KEY}, "rule_ids": {"SS": [FAILED]}})
    clock.now += 59
    assert ids(packs().matching({"type": "fp"})) == [FAILED]  # cached
    assert store.reads == 1
    clock.now += 1
    assert packs().matching({"type": "fp"}) == ()
    assert store.reads == 2 and packs.active().disabled == {FAILED}


def test_a_corrupt_pack_is_named_and_the_other_packs_still_run() -> None:
    good = pack_item("good", document(("a.yml", rule(FAILED, "fp"))), installed_at="t")
    bad = pack_item("bad", document(("b.yml", rule(SIGNUP, "ss"))), installed_at="t")
    bad["sha256"] = {"S": "f" * 64}
    packs = provider(FakeStore([bad, good]), Clock())
    active = packs.active()
    assert active.packs == (DEFAULT_PACK, "good")
    assert [(p.pack, "sha256" in p.reason) for p in active.problems] == [("bad", True)]
    assert ids(active.plan.matching({"type": "fp"})) == [FAILED]
    assert ids(active.plan.matching({"type": "s"})) == [OTHER]
    assert active.as_dict()["rule_pack_errors"] == [str(active.problems[0])]


def test_a_disabled_pack_does_not_run_and_a_pack_repeating_an_id_is_left_out_whole() -> None:
    off = pack_item("off", document(("b.yml", rule(SIGNUP, "ss"))), installed_at="t")
    off["enabled"] = {"BOOL": False}
    copy = pack_item("copy", document(("c.yml", rule(OTHER, "f"))), installed_at="t")
    active = provider(FakeStore([off, copy]), Clock()).active()
    assert active.packs == (DEFAULT_PACK,)
    assert active.plan.matching({"type": "ss"}) == ()
    (problem,) = active.problems
    assert problem.pack == "copy" and "also in pack 'default'" in problem.reason


def test_a_store_that_cannot_be_read_keeps_the_last_plan_and_is_tried_again_soon() -> None:
    store = FakeStore(
        [pack_item("mine", document(("a.yml", rule(FAILED, "fp"))), installed_at="t")]
    )
    clock = Clock()
    packs = RulePacks(store, lambda: merge(()), max_age_s=600, clock=clock)
    assert ids(packs().matching({"type": "fp"})) == [FAILED]
    store.failing = True
    clock.now += 600
    active = packs.active()
    assert ids(active.plan.matching({"type": "fp"})) == [FAILED]
    assert [p.pack for p in active.problems] == ["(store)"]
    assert "ThrottlingException" in str(active.problems[0])
    store.failing = False
    clock.now += 60  # not the whole max age: a failed read is tried again within a minute
    assert packs.active().problems == ()
    assert store.reads == 3


def test_a_first_read_that_fails_runs_the_default_pack_alone() -> None:
    store = FakeStore([])
    store.failing = True
    active = provider(store, Clock()).active()
    assert active.packs == (DEFAULT_PACK,)
    assert ids(active.plan.matching({"type": "s"})) == [OTHER]
    assert [p.pack for p in active.problems] == ["(store)"]


def test_a_default_pack_that_does_not_load_is_reported_not_raised() -> None:
    def broken() -> Plan:
        raise RulePackError("Sigma plan: rules must be a list")

    store = FakeStore(
        [pack_item("mine", document(("a.yml", rule(FAILED, "fp"))), installed_at="t")]
    )
    active = RulePacks(store, broken, max_age_s=60, clock=Clock()).active()
    assert ids(active.plan.matching({"type": "fp"})) == [FAILED]
    assert [p.pack for p in active.problems] == [DEFAULT_PACK]


def test_a_read_that_finds_nothing_changed_gives_the_same_plan_object() -> None:
    store = FakeStore(
        [pack_item("mine", document(("a.yml", rule(FAILED, "fp"))), installed_at="t")]
    )
    clock = Clock()
    packs = provider(store, clock)
    first = packs()
    clock.now += 60
    assert packs() is first and store.reads == 2
    store.items.append({"pack": {"S": DISABLED_KEY}, "rule_ids": {"SS": [FAILED]}})
    clock.now += 60
    assert packs() is not first
