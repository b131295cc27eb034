"""The Sigma compiler and the plan evaluator, one behaviour at a time (docs/sigma.md)."""

from __future__ import annotations

import json
import textwrap
import time
from typing import Any

import pytest

from log_forwarder.cli.sigma_compiler import compile_texts, field_path
from log_forwarder.exceptions import RulePackError, SigmaRuleRefused
from log_forwarder.sigma_plan import MAX_REGEX_INPUT, Plan, load_plan

RULE_ID = "9b0b7d0e-0000-4000-8000-000000000001"


def rule_yaml(detection: str, *, logsource: str = "{product: auth0}", extra: str = "") -> str:
    body = textwrap.indent(textwrap.dedent(detection).strip(), "  ")
    return f"title: test rule\nid: {RULE_ID}\nlogsource: {logsource}\n{extra}detection:\n{body}\n"


def plan_of(detection: str, **variables: list[str]) -> Plan:
    compiled = compile_texts([("t.yml", rule_yaml(detection))], variables)
    assert compiled.refused == [], compiled.refused
    # What the function gets is the JSON text.
    return load_plan(json.loads(json.dumps(compiled.plan)))


def matches(plan: Plan, event: dict[str, Any]) -> bool:
    return [r.id for r in plan.matching(event)] == [RULE_ID]


def refusal(detection: str, **kwargs: Any) -> str:
    compiled = compile_texts([("t.yml", rule_yaml(detection, **kwargs))])
    assert compiled.plan["rules"] == []
    assert len(compiled.refused) == 1
    return compiled.refused[0].feature


# -- fields --------------------------------------------------------------------------------------


def test_the_stream_prefix_maps_onto_the_api_event_and_a_bare_field_is_a_path_as_written() -> None:
    plan = plan_of("""
        selection:
          data.details.request.auth.user.user_id: auth0|admin
          ip: 192.0.2.1
        condition: selection
    """)
    event = {
        "ip": "192.0.2.1",
        "details": {"request": {"auth": {"user": {"user_id": "auth0|admin"}}}},
    }
    assert matches(plan, event)
    # A Log Streams entry (with its data wrapper) is not what the function evaluates.
    assert not matches(plan, {"log_id": "1", "data": event})
    assert field_path("data.details.response.body.shields{}") == (
        "details",
        "response",
        "body",
        "shields",
    )
    with pytest.raises(SigmaRuleRefused, match="not a path"):
        field_path("data.")


def test_a_list_anywhere_on_the_path_is_multi_valued_and_not_asks_that_no_element_matches() -> None:
    plan = plan_of("""
        selection:
          data.type: sapi
        shield:
          data.details.response.body.shields{}: block
        condition: selection and not shield
    """)
    body = {"type": "sapi", "details": {"response": {"body": {}}}}
    for shields, fires in [
        (["block", "user_notification"], False),
        (["user_notification"], True),
        ([], True),
        ([["BLOCK"]], False),  # nested lists are flattened; case-insensitive
    ]:
        body["details"]["response"]["body"]["shields"] = shields
        assert matches(plan, body) is fires, shields
    # Without `{}` the same list is multi-valued all the same, and so is a list of objects.
    plan = plan_of("""
        selection:
          data.details.prompts.name: login
        condition: selection
    """)
    assert matches(plan, {"details": {"prompts": [{"name": "mfa"}, {"name": "Login"}]}})
    assert not matches(plan, {"details": {"prompts": [{"name": "mfa"}, {"other": "login"}]}})


# -- values ---------------------------------------------------------------------------------------


def test_values_compare_as_their_json_text_and_booleans_as_the_sqlite_backend_reads_them() -> None:
    plan = plan_of("""
        selection:
          data.details.response.statusCode: 200
          data.details.response.body.enabled: false
          data.details.request.body.enabled: 'false'
        condition: selection
    """)

    def event(status: Any, enabled: Any, requested: Any) -> dict[str, Any]:
        return {
            "details": {
                "response": {"statusCode": status, "body": {"enabled": enabled}},
                "request": {"body": {"enabled": requested}},
            }
        }

    assert matches(plan, event(200, False, False))
    assert matches(plan, event("200", "FALSE", "false"))
    assert matches(plan, event(200, 0, False))  # a rule's `false` is `false` or `0`
    assert not matches(plan, event(200.0, False, False))  # 200.0 is spelled "200.0"
    assert not matches(plan, event(200, None, False))
    assert not matches(plan, event(200, False, True))
    assert not matches(plan, event(200, {"x": 1}, False))


def test_null_holds_for_absent_null_empty_and_objects_and_exists_for_any_present_field() -> None:
    plan = plan_of("""
        empty:
          data.user_name: null
        condition: empty
    """)
    for value, fires in [(None, True), ([], True), ({"a": 1}, True), ("", False), ("x", False)]:
        assert matches(plan, {"user_name": value}) is fires, value
    assert matches(plan, {})
    present = plan_of("""
        has:
          data.user_name|exists: true
        condition: has
    """)
    assert matches(present, {"user_name": None})  # "not its value, be it empty or null"
    assert not matches(present, {"other": 1})
    absent = plan_of("""
        has:
          data.user_name|exists: false
        condition: has
    """)
    assert matches(absent, {"other": 1})
    assert not matches(absent, {"user_name": ""})


def test_wildcards_escapes_and_case() -> None:
    plan = plan_of(r"""
        sel:
          data.description:
            - 'Get client*'
            - '*secret?'
            - 'literal \*star'
        condition: sel
    """)
    assert matches(plan, {"description": "GET CLIENT by id"})
    assert matches(plan, {"description": "rotate secrets"})
    assert not matches(plan, {"description": "rotate secret"})  # `?` is exactly one character
    assert matches(plan, {"description": "Literal *STAR"})
    assert not matches(plan, {"description": "literal xstar"})
    cased = plan_of("""
        sel:
          data.description|cased|contains: Secret
        condition: sel
    """)
    assert matches(cased, {"description": "a Secret read"})
    assert not matches(cased, {"description": "a secret read"})


def test_modifiers_contains_all_startswith_endswith_windash_base64() -> None:
    plan = plan_of("""
        sel:
          data.user_agent|contains|all: [curl, linux]
          data.user_name|endswith: '@example.com'
          data.client_name|startswith: api
        condition: sel
    """)
    event = {"user_agent": "Curl/8 (Linux)", "user_name": "A@Example.com", "client_name": "API x"}
    assert matches(plan, event)
    assert not matches(plan, {**event, "user_agent": "curl/8"})
    dashes = plan_of("""
        sel:
          data.details.command|windash|contains: ' -force'
        condition: sel
    """)
    assert matches(dashes, {"details": {"command": "run /force now"}})
    assert not matches(dashes, {"details": {"command": "run force"}})
    encoded = plan_of("""
        sel:
          data.details.body|base64offset|contains: secret
        condition: sel
    """)
    import base64

    assert matches(encoded, {"details": {"body": base64.b64encode(b"my secret value").decode()}})


def test_regex_flags_cidr_comparisons_and_fieldref() -> None:
    plan = plan_of("""
        sel:
          data.user_name|re: '^ADMIN@'
        condition: sel
    """)
    assert matches(plan, {"user_name": "ADMIN@x"})
    assert not matches(plan, {"user_name": "admin@x"})  # case-sensitive by default
    flagged = plan_of("""
        sel:
          data.user_name|re|i: '^admin@'
        condition: sel
    """)
    assert matches(flagged, {"user_name": "ADMIN@x"})
    net = plan_of("""
        sel:
          data.ip|cidr: [10.0.0.0/8, '2001:db8::/32']
        condition: sel
    """)
    assert matches(net, {"ip": "10.2.3.4"})
    assert matches(net, {"ip": "2001:db8::7"})
    assert not matches(net, {"ip": "11.0.0.1"})
    assert not matches(net, {"ip": "10.0.0.999"})
    count = plan_of("""
        sel:
          data.details.stats.loginsCount|gte: 10
        condition: sel
    """)
    assert matches(count, {"details": {"stats": {"loginsCount": 10}}})
    assert matches(count, {"details": {"stats": {"loginsCount": "12"}}})
    assert not matches(count, {"details": {"stats": {"loginsCount": 9}}})
    assert not matches(count, {"details": {"stats": {"loginsCount": True}}})
    same = plan_of("""
        sel:
          data.user_name|fieldref: data.details.prompts.user_name
        condition: sel
    """)
    assert matches(
        same, {"user_name": "A", "details": {"prompts": [{"user_name": "b"}, {"user_name": "a"}]}}
    )
    assert not matches(same, {"user_name": "a", "details": {}})


def test_keywords_search_every_value_of_the_event() -> None:
    plan = plan_of("""
        keywords:
          - mimikatz
        condition: keywords
    """)
    assert matches(plan, {"details": {"body": ["x", {"cmd": "run MIMIKATZ.exe"}]}})
    assert not matches(plan, {"details": {"mimikatz": "a key, not a value"}})


def test_conditions_one_of_all_of_them_not_and_brackets() -> None:
    plan = plan_of("""
        selection_a:
          data.type: f
        selection_b:
          data.type: fp
        filter_x:
          data.ip: 192.0.2.1
        condition: 1 of selection_* and not (filter_x or all of filter_*)
    """)
    assert matches(plan, {"type": "fp", "ip": "192.0.2.2"})
    assert not matches(plan, {"type": "fp", "ip": "192.0.2.1"})
    assert not matches(plan, {"type": "s", "ip": "192.0.2.2"})
    everything = plan_of("""
        a:
          data.type: f
        b:
          data.ip: 192.0.2.1
        condition: all of them
    """)
    assert matches(everything, {"type": "F", "ip": "192.0.2.1"})
    assert not matches(everything, {"type": "f"})


def test_regex_inputs_are_cut_to_a_bound_so_a_hostile_value_cannot_stall_a_run() -> None:
    # The catalog's LiquidJS pattern backtracks cubically on text full of "{{": 16 s for 4 KB.
    pattern = r"\{\{([^}]+?)(?:\s*\|\s*(?!escape|escape_once|h|html_escape)[^}]+)??\s*\}\}"
    plan = plan_of(f"""
        sel:
          data.details.html|re: '{pattern}'
        condition: sel
    """)
    hostile = {"details": {"html": "{{a |" * 20_000}}
    started = time.process_time()
    assert not matches(plan, hostile)
    assert time.process_time() - started < 1  # uncut: minutes (16 s at 4 KB)
    assert plan.regex_inputs_cut(hostile) == (RULE_ID,)
    assert plan.regex_inputs_cut({"details": {"html": "{{ a }}"}}) == ()
    # A list of long values shares one bound: 50 values of 1,500 characters took 12 s.
    many = {"details": {"html": ["{{a |" * 300] * 50}}
    started = time.process_time()
    assert not matches(plan, many)
    assert time.process_time() - started < 1
    assert plan.regex_inputs_cut(many) == (RULE_ID,)
    late = {"details": {"html": "x" * MAX_REGEX_INPUT + "{{ user }}"}}
    assert not matches(plan, late)  # beyond the bound: not seen, and said so
    assert plan.regex_inputs_cut(late) == (RULE_ID,)


def test_a_list_valued_type_is_tried_against_every_rule() -> None:
    plan = plan_of("""
        sel:
          data.type: sapi
        condition: sel
    """)
    assert matches(plan, {"type": ["x", "SAPI"]})
    assert not matches(plan, {"type": 5})


# -- compiling -----------------------------------------------------------------------------------


def test_catalog_placeholders_are_filled_from_variables_or_listed() -> None:
    detection = """
        sel:
          data.hostname: '{your-tenant-url}'
          data.client_id: {global_client_id}
        condition: sel
    """
    listed = compile_texts([("t.yml", rule_yaml(detection))])
    assert listed.plan["rules"][0]["placeholders"] == ["global_client_id", "your-tenant-url"]
    assert listed.notes == [
        "t.yml: unquoted {global_client_id} read as the text '{global_client_id}'"
    ]
    filled = {"your-tenant-url": ["a.example.com", "b.example.com"], "global_client_id": ["gc"]}
    plan = plan_of(detection, **filled)
    assert plan.rules[0].placeholders == ()
    assert matches(plan, {"hostname": "b.example.com", "client_id": "gc"})
    assert not matches(plan, {"hostname": "{your-tenant-url}", "client_id": "gc"})


def test_sigma_placeholders_expand_from_variables_or_the_rule_is_refused() -> None:
    detection = """
        sel:
          data.ip|expand: '%admin_ips%'
        condition: sel
    """
    plan = plan_of(detection, admin_ips=["192.0.2.1", "192.0.2.2"])
    assert matches(plan, {"ip": "192.0.2.2"})
    assert not matches(plan, {"ip": "192.0.2.3"})
    assert "admin_ips" in refusal(detection)


@pytest.mark.parametrize(
    ("detection", "needs"),
    [
        ("sel:\n  data.user_name|re: '(a+)+$'\ncondition: sel", "repeats a group"),
        ("sel:\n  data.date|hour: 3\ncondition: sel", "time modifiers"),
        ("sel:\n  data.user_name|re: '(?<'\ncondition: sel", "Regular expression"),
    ],
)
def test_what_the_evaluator_cannot_do_faithfully_is_refused_by_name(
    detection: str, needs: str
) -> None:
    assert needs in refusal(detection)


def test_a_rule_for_another_product_is_refused() -> None:
    assert "windows" in refusal("sel:\n  Image: x\ncondition: sel", logsource="{product: windows}")


def test_correlation_refusals_name_the_feature() -> None:
    base = rule_yaml("sel:\n  data.type: f\ncondition: sel", extra="name: base\n")
    chain = base + textwrap.dedent("""
        ---
        title: first
        name: first
        correlation: {type: event_count, rules: [base], group-by: [data.ip], timespan: 1h,
                      condition: {gte: 2}}
        ---
        title: second
        correlation: {type: event_count, rules: [first], group-by: [data.ip], timespan: 1h,
                      condition: {gte: 2}}
        ---
        title: huge
        correlation: {type: event_count, rules: [base], group-by: [data.ip], timespan: 1h,
                      condition: {gte: 1000}}
    """)
    compiled = compile_texts([("c.yml", chain)])
    # A chain compiles (tests/unit/test_sigma_chains.py); the huge threshold does not.
    assert [c["title"] for c in compiled.plan["correlations"]] == ["first", "second"]
    assert sorted(r.feature for r in compiled.refused) == [
        "condition gte: 1000 needs counts above 50, and a correlation keeps 50 events per group"
        " (a larger count reads as 50)",
    ]


# -- loading -------------------------------------------------------------------------------------


def test_a_bad_plan_is_refused_with_the_rule_and_the_problem_named() -> None:
    good = compile_texts([("t.yml", rule_yaml("sel:\n  data.type: f\ncondition: sel"))]).plan
    with pytest.raises(RulePackError, match="version 9 is not the one"):
        load_plan({**good, "version": 9})
    with pytest.raises(RulePackError, match="not a Sigma plan"):
        load_plan({"format": "something else"})
    broken = json.loads(json.dumps(good))
    broken["rules"][0]["condition"] = ["str", 0, "like", "f", False]
    with pytest.raises(RulePackError, match=f"rule {RULE_ID}: string match 'like'"):
        load_plan(broken)
    broken["rules"][0]["condition"] = ["str", 7, "eq", "f", False]
    with pytest.raises(RulePackError, match="field index 7"):
        load_plan(broken)
    broken["rules"][0]["condition"] = ["re", 0, "(", ""]
    with pytest.raises(RulePackError, match="does not compile"):
        load_plan(broken)
    broken["rules"][0]["condition"] = ["str", 0, "eq", "f", False]
    broken["rules"][0]["level"] = "severe"
    with pytest.raises(RulePackError, match="level 'severe'"):
        load_plan(broken)
