"""template.yaml's Athena table, saved queries, dashboard and alarm notifications: each exists
only with the destinations that need it, and every alarm reaches whoever the parameters name."""

from __future__ import annotations

import re
from typing import Any

import pytest

from devtools.local_aws import TEMPLATE_PATH, _Resolver, load_template
from tests.unit.test_template import sam_translate

OPERATIONS_DOC = TEMPLATE_PATH.parent / "docs" / "operations.md"

# Which resources each destination needs (every other resource is in every stack).
ONLY_WITH = {
    "AWS::Glue::Database": "s3",
    "AWS::Glue::Table": "s3",
    "AWS::Logs::QueryDefinition": "cloudwatch",
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def active_resources(
    translated: dict[str, Any], parameters: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """The resources CloudFormation would create from the SAM-translated template."""
    resolver = _Resolver(translated, parameters, stack_name="obs")
    return {
        logical_id: resource
        for logical_id, resource in translated["Resources"].items()
        if resolver.active(logical_id)
    }


@pytest.mark.parametrize("destinations", ["cloudwatch", "s3", "cloudwatch,s3"])
def test_resources_exist_only_with_the_destinations_that_need_them(
    template: dict[str, Any], destinations: str
) -> None:
    # GIVEN the template as SAM translates it for these destinations
    translated = sam_translate(template, destinations)
    resources = active_resources(translated, {"Destinations": destinations})
    types = [resource["Type"] for resource in resources.values()]
    # THEN Glue objects come with S3, saved queries with CloudWatch, the dashboard always
    for resource_type, destination in ONLY_WITH.items():
        wanted = destination in destinations.split(",")
        assert (resource_type in types) == wanted, (resource_type, destinations)
    assert types.count("AWS::Logs::QueryDefinition") in {0, 7}
    assert types.count("AWS::CloudWatch::Dashboard") == 1
    # AND no stack gets the e-mail topic unless an address is given
    assert "AWS::SNS::Topic" not in types
    with_email = active_resources(
        translated, {"Destinations": destinations, "AlarmEmail": "ops@example.com"}
    )
    assert [r["Type"] for r in with_email.values()].count("AWS::SNS::Topic") == 1


def test_saved_queries_read_the_forwarded_log_group(template: dict[str, Any]) -> None:
    queries = {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Logs::QueryDefinition"
    }
    for logical_id, query in queries.items():
        assert query["Condition"] == "UseCloudWatch", logical_id
        properties = query["Properties"]
        assert properties["LogGroupNames"] == [{"Ref": "ForwardedLogGroup"}], logical_id
        assert properties["Name"]["Fn::Sub"].startswith("${AWS::StackName}/"), logical_id
        # Events are told apart from the forwarder's own records; those are named by type.
        text = properties["QueryString"]
        # One command per line: each line after the first starts a command with "| ".
        assert all(line.startswith("| ") for line in text.splitlines()[1:]), logical_id
        assert "not ispresent(_forwarder.record_type)" in text or re.search(
            r'_forwarder\.record_type = "(gap|finding|quarantine)"', text
        ), logical_id


def test_the_athena_table_reads_the_bucket_by_projected_day(template: dict[str, Any]) -> None:
    table = template["Resources"]["AthenaTable"]
    assert table["Condition"] == "UseS3"
    assert table["Properties"]["DatabaseName"] == {"Ref": "AthenaDatabase"}
    parameters = table["Properties"]["TableInput"]["Parameters"]
    # The key layout the S3 sink writes: {S3Prefix}dt=YYYY-MM-DD/{user}/{batch}.jsonl.gz
    assert parameters["storage.location.template"] == {
        "Fn::Sub": "s3://${ForwardedBucket}/${S3Prefix}dt=${!dt}/"
    }
    assert (parameters["projection.dt.type"], parameters["projection.dt.format"]) == (
        "date",
        "yyyy-MM-dd",
    )
    assert parameters["projection.dt.range"].endswith(",NOW+1DAYS")
    storage = table["Properties"]["TableInput"]["StorageDescriptor"]
    assert storage["Location"] == {"Fn::Sub": "s3://${ForwardedBucket}/${S3Prefix}"}
    assert storage["SerdeInfo"]["SerializationLibrary"] == "org.openx.data.jsonserde.JsonSerDe"
    # Athena column names are lower case; the table is case-sensitive, so each JSON key that is
    # not lower case has its mapping.
    names = [column["Name"] for column in storage["Columns"]]
    assert names == [name.lower() for name in names]
    assert len(set(names)) == len(names)
    mappings = {
        k.removeprefix("mapping."): v
        for k, v in storage["SerdeInfo"]["Parameters"].items()
        if k.startswith("mapping.")
    }
    assert mappings == {"ismobile": "isMobile", "event_schema": "$event_schema"}
    types = {column["Name"]: column["Type"] for column in storage["Columns"]}
    # Free-form and mixed-type fields are strings (their JSON text), never structs.
    assert types["details"] == types["scope"] == types["event_schema"] == "string"


@pytest.mark.parametrize("prefix", ["", "auth0-logs/", "logs/auth0/"])
def test_the_table_location_is_where_the_s3_sink_writes(
    template: dict[str, Any], prefix: str
) -> None:
    from log_forwarder.records import OutputLine
    from log_forwarder.sinks.batching import s3_objects

    # GIVEN the table resolved for a stack with this S3Prefix
    resolver = _Resolver(
        template,
        {"Destinations": "s3", "S3Prefix": prefix},
        stack_name="obs",
        refs={"ForwardedBucket": "obs-bucket", "AthenaDatabase": "obs"},
    )
    parameters = resolver.resolve(template["Resources"]["AthenaTable"]["Properties"])
    table = parameters["TableInput"]
    location_template = table["Parameters"]["storage.location.template"]
    # WHEN the S3 sink lays out a batch spanning two UTC days, for a user id with | / and spaces
    day_ms = 86_400_000
    lines = [OutputLine(timestamp_ms=20_000 * day_ms + 5, line="{}", log_id="a")]
    lines.append(OutputLine(timestamp_ms=20_001 * day_ms + 5, line="{}", log_id="b"))
    objects = [
        item
        for user in ("samlp|corp/x y", "_svc|bot", ".hidden|x", "auth0|ünï cödé")
        for item in s3_objects(lines, prefix=prefix, user_id=user, batch_id="b1")
    ]
    # THEN each object is under the location of its day's partition, below the table location,
    # in no folder Athena would skip as hidden (a name starting with _ or .)
    assert len(objects) == 8
    for item in objects:
        below = item.key.removeprefix(prefix).split("/")
        assert not [part for part in below if part.startswith(("_", "."))], item.key
        day = re.search(r"dt=(\d{4}-\d{2}-\d{2})/", item.key)
        assert day, item.key
        location = location_template.replace("${dt}", day.group(1))
        assert f"s3://obs-bucket/{item.key}".startswith(location)
        assert location.startswith(table["StorageDescriptor"]["Location"])


def test_the_database_name_is_a_valid_athena_name(template: dict[str, Any]) -> None:
    resolver = _Resolver(template, {"Destinations": "s3"}, stack_name="auth0-log-Forwarder-2")
    name = resolver.resolve(
        template["Resources"]["AthenaDatabase"]["Properties"]["DatabaseInput"]["Name"]
    )
    assert re.fullmatch(r"[a-z0-9_]+", name.lower()), name


def alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
    }


@pytest.mark.parametrize(
    ("email", "topic", "notified"),
    [
        ("", "", []),
        ("ops@example.com", "", ["AlarmTopic"]),
        ("", "arn:aws:sns:us-east-1:123456789012:oncall", ["oncall"]),
        ("ops@example.com", "arn:aws:sns:us-east-1:123456789012:oncall", ["AlarmTopic", "oncall"]),
    ],
)
def test_every_alarm_notifies_the_email_topic_and_the_given_topic(
    template: dict[str, Any], email: str, topic: str, notified: list[str]
) -> None:
    resolver = _Resolver(
        template,
        {"Destinations": "cloudwatch", "AlarmEmail": email, "AlarmTopicArn": topic},
        stack_name="obs",
        refs={"AlarmTopic": "AlarmTopic", "ForwarderFunction": "fn", "FailureQueue": "q"},
        attributes={("FailureQueue", "QueueName"): "q"},
    )
    found = alarms(template)
    assert {"GapsAlarm", "ErrorsAlarm", "FailureQueueAlarm", "NotRunningAlarm"} <= set(found)
    for logical_id, alarm in found.items():
        actions = resolver.resolve(alarm["Properties"]["AlarmActions"])
        assert [a.rsplit(":", 1)[-1] for a in actions] == notified, logical_id
    assert resolver.active("AlarmTopic") == bool(email)
    if email:
        topic_properties = resolver.resolve(template["Resources"]["AlarmTopic"]["Properties"])
        assert topic_properties["Subscription"] == [{"Protocol": "email", "Endpoint": email}]
        # Deliberately without the AWS managed key, which CloudWatch alarms cannot publish under.
        assert "KmsMasterKeyId" not in topic_properties


def test_the_docs_say_what_each_alarm_means_and_what_to_do(template: dict[str, Any]) -> None:
    readme = OPERATIONS_DOC.read_text(encoding="utf-8")
    section = readme.split("### Alarms", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Za-z]+Alarm)` \|", section, re.M))
    assert documented == set(alarms(template))
    for row in re.findall(r"^\| `[A-Za-z]+Alarm` \|(.+)\|(.+)\|$", section, re.M):
        assert all(len(cell.strip()) > 20 for cell in row), row


def test_the_alarm_email_parameter_accepts_an_address_or_nothing(template: dict[str, Any]) -> None:
    pattern = template["Parameters"]["AlarmEmail"]["AllowedPattern"]
    assert template["Parameters"]["AlarmEmail"]["Default"] == ""
    for good in ("", "ops@example.com", "a.b+alerts@sub.example.org"):
        assert re.fullmatch(pattern, good), good
    for bad in ("ops", "ops@", "two words@example.com", "ops@example"):
        assert not re.fullmatch(pattern, bad), bad


def test_every_field_of_auth0s_log_schemas_is_a_column_of_the_table(
    template: dict[str, Any],
) -> None:
    from devtools.schema_events import SCHEMA_DIR, event_codes, schema_for

    if not SCHEMA_DIR.is_dir():
        pytest.skip(f"Auth0's log schemas not found at {SCHEMA_DIR} (../shared is not checked out)")
    # GIVEN the top-level fields Auth0's own log schemas define (166 types)
    fields = {name for code in event_codes() for name in schema_for(code).get("properties", {})}
    storage = template["Resources"]["AthenaTable"]["Properties"]["TableInput"]["StorageDescriptor"]
    mappings = {
        v: k.removeprefix("mapping.")
        for k, v in storage["SerdeInfo"]["Parameters"].items()
        if k.startswith("mapping.")
    }
    columns = {column["Name"] for column in storage["Columns"]}
    # THEN each is a column under its own name, or under the column its mapping names: a field
    # without one is in the objects but invisible to Athena
    assert sorted(f for f in fields if mappings.get(f, f) not in columns) == []


@pytest.mark.parametrize(
    ("metric", "alarm"),
    [
        ("Gaps", "GapsAlarm"),
        ("TenantFailed", "NoUserReadAlarm"),
        ("UsersMissing", "MissingUsersAlarm"),
        ("RulePackErrors", "RulePacksAlarm"),
        ("SharedBatchesForgotten", "SharedDetectionMemoryAlarm"),
    ],
)
def test_a_metric_that_asks_the_operator_to_act_has_an_alarm_over_it(
    template: dict[str, Any], metric: str, alarm: str
) -> None:
    from log_forwarder.report import METRICS

    # GIVEN a metric the function publishes, whose any value above zero needs someone
    assert metric in {name for name, _, _ in METRICS}
    # THEN an alarm watches it in the function's namespace, under the service dimension
    properties = alarms(template)[alarm]["Properties"]
    assert properties["MetricName"] == metric
    assert properties["Namespace"] == {"Ref": "MetricsNamespace"}
    assert properties["Dimensions"] == [{"Name": "service", "Value": "auth0-user-log-forwarder"}]
    assert (properties["Threshold"], properties["ComparisonOperator"]) == (
        0,
        "GreaterThanThreshold",
    )
