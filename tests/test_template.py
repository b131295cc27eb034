"""template.yaml: lint-clean, translatable by SAM, least privilege, and consistent with the code,
the design notes and the events/ files."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from devtools.local_aws import (
    TEMPLATE_PATH,
    DeployedResources,
    LocalAws,
    deploy_template,
    function_environment,
    load_template,
)

ROOT = TEMPLATE_PATH.parent
DESTINATIONS = ["cloudwatch", "s3", "cloudwatch,s3"]
LOCAL_ONLY_VARIABLES = {
    "AUTH0_BASE_URL",
    "AUTH0_CLIENT_ID",
    "AUTH0_CLIENT_SECRET",
    "AWS_ENDPOINT_URL",
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    return dict(template["Resources"])


POWERTOOLS_VARIABLES = {
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
}


def function_variables(template: dict[str, Any]) -> dict[str, Any]:
    return {
        **template["Globals"]["Function"]["Environment"]["Variables"],
        **template["Resources"]["ForwarderFunction"]["Properties"]["Environment"]["Variables"],
    }


def sam_translate(template: dict[str, Any], destinations: str) -> dict[str, Any]:
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    sam = copy.deepcopy(template)
    # `sam build`/`sam package` replace the local CodeUri with an S3 location before the
    # transform runs; the translator refuses anything else.
    sam["Resources"]["ForwarderFunction"]["Properties"]["CodeUri"] = "s3://bucket/code.zip"
    session = boto3.session.Session(
        region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    translator = Translator({}, Parser(), boto_session=session)
    translated: dict[str, Any] = translator.translate(
        sam,
        {"Auth0Domain": "example.eu.auth0.com", "Destinations": destinations},
        get_managed_policy_map=dict,
    )
    return translated


@pytest.fixture(scope="module", params=DESTINATIONS)
def translated(request: pytest.FixtureRequest, template: dict[str, Any]) -> dict[str, Any]:
    return sam_translate(template, request.param)


def of_type(translated: dict[str, Any], resource_type: str) -> dict[str, Any]:
    return {
        logical_id: resource
        for logical_id, resource in translated["Resources"].items()
        if resource["Type"] == resource_type
    }


def walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


def test_cfn_lint_reports_no_errors_or_warnings() -> None:
    from cfnlint.api import lint

    # GIVEN the template / WHEN cfn-lint runs (the same check as `make cfn-lint`)
    matches = lint(TEMPLATE_PATH.read_text(encoding="utf-8"))
    # THEN it reports no error and no warning
    problems = [f"{match.rule.id} {match.message}" for match in matches if match.rule.id[0] in "EW"]
    assert problems == []


def test_sam_translates_it_for_every_destination(translated: dict[str, Any]) -> None:
    functions = of_type(translated, "AWS::Lambda::Function")
    assert list(functions) == ["ForwarderFunction"]


def test_the_function_runs_alone_on_a_current_runtime(translated: dict[str, Any]) -> None:
    properties = translated["Resources"]["ForwarderFunction"]["Properties"]
    assert properties["Runtime"] in {"python3.12", "python3.13"}
    # arm64 unless overridden (x86_64 lets `sam local invoke` run without emulation)
    assert properties["Architectures"] == [{"Ref": "Architecture"}]
    assert properties["MemorySize"] == 512
    assert properties["Timeout"] == {"Ref": "FunctionTimeout"}
    assert properties["ReservedConcurrentExecutions"] == 1
    assert properties["Handler"] == "log_forwarder.app.lambda_handler"
    assert properties["LoggingConfig"] == {"LogFormat": "JSON"}


def test_the_schedule_is_a_classic_eventbridge_rule(translated: dict[str, Any]) -> None:
    # The events/ file reproduces what a classic rule sends (ScheduleV2 would send its Input).
    rules = of_type(translated, "AWS::Events::Rule")
    assert [rule["Properties"]["ScheduleExpression"] for rule in rules.values()] == [
        {"Ref": "ScheduleExpression"}
    ]
    assert of_type(translated, "AWS::Scheduler::Schedule") == {}


def test_the_sample_event_is_the_scheduled_event_envelope() -> None:
    event = json.loads((ROOT / "events" / "scheduled-event.json").read_text(encoding="utf-8"))
    assert event["detail-type"] == "Scheduled Event"
    assert event["source"] == "aws.events"
    assert event["detail"] == {}
    assert re.fullmatch(r"arn:aws:events:[a-z0-9-]+:\d{12}:rule/.+", event["resources"][0])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", event["time"])
    assert {"id", "region", "account"} <= set(event)


def schedule_period_seconds(expression: str) -> int:
    match = re.fullmatch(r"rate\((\d+) (minute|hour|day)s?\)", expression)
    assert match, expression
    return int(match.group(1)) * {"minute": 60, "hour": 3600, "day": 86400}[match.group(2)]


def test_failed_or_stale_invocations_go_to_an_encrypted_queue_without_retries(
    template: dict[str, Any], translated: dict[str, Any]
) -> None:
    (config,) = of_type(translated, "AWS::Lambda::EventInvokeConfig").values()
    properties = config["Properties"]
    assert properties["MaximumRetryAttempts"] == 0
    # A throttled tick must expire before the next one arrives, or ticks pile up.
    period = schedule_period_seconds(template["Parameters"]["ScheduleExpression"]["Default"])
    assert properties["MaximumEventAgeInSeconds"] < period
    assert properties["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["FailureQueue", "Arn"]
    }
    assert translated["Resources"]["FailureQueue"]["Properties"]["SqsManagedSseEnabled"] is True


def role_statements(translated: dict[str, Any]) -> list[tuple[str | None, dict[str, Any]]]:
    """(condition or None, statement) for every inline statement of the function's role."""
    role = translated["Resources"]["ForwarderFunctionRole"]["Properties"]
    found: list[tuple[str | None, dict[str, Any]]] = []
    for policy in role["Policies"]:
        condition = None
        if "Fn::If" in policy:
            condition, policy, otherwise = policy["Fn::If"]
            assert otherwise == {"Ref": "AWS::NoValue"}
        found.extend((condition, statement) for statement in policy["PolicyDocument"]["Statement"])
    return found


def test_no_statement_grants_data_actions_on_every_resource(translated: dict[str, Any]) -> None:
    for _, statement in role_statements(translated):
        resources = (
            statement["Resource"]
            if isinstance(statement["Resource"], list)
            else [statement["Resource"]]
        )
        assert "*" not in resources, statement
    role = translated["Resources"]["ForwarderFunctionRole"]["Properties"]
    assert [arn.rsplit("/", 1)[-1] for arn in role["ManagedPolicyArns"]] == [
        "AWSLambdaBasicExecutionRole"
    ]


def test_each_permission_is_scoped_to_its_resource(translated: dict[str, Any]) -> None:
    statements = role_statements(translated)
    by_service: dict[str, tuple[str | None, dict[str, Any]]] = {}
    for condition, statement in statements:
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        services = {action.split(":")[0] for action in actions}
        assert len(services) == 1, statement
        by_service[services.pop()] = (condition, statement)

    condition, logs = by_service["logs"]
    assert condition == "UseCloudWatch"
    assert set(logs["Action"]) == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "logs:GetLogEvents",
    }
    assert logs["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}"
        ":log-group:${ForwardedLogGroup}:*"
    }

    condition, s3 = by_service["s3"]
    assert condition == "UseS3"
    assert s3["Action"] == ["s3:PutObject", "s3:GetObject"]
    assert s3["Resource"] == {"Fn::Sub": "${ForwardedBucket.Arn}/${S3Prefix}*"}

    condition, dynamodb = by_service["dynamodb"]
    assert condition is None
    assert dynamodb["Resource"] == {"Fn::GetAtt": ["CheckpointTable", "Arn"]}
    assert "dynamodb:DeleteItem" not in dynamodb["Action"]

    _, secrets = by_service["secretsmanager"]
    assert secrets["Action"] == ["secretsmanager:GetSecretValue"]
    assert "secret:${Auth0CredentialsSecretName}-??????" in json.dumps(secrets["Resource"])

    _, sqs = by_service["sqs"]
    assert sqs["Resource"] == {"Fn::GetAtt": ["FailureQueue", "Arn"]}


def test_the_checkpoint_table_is_kept_recoverable_and_encrypted(resources: dict[str, Any]) -> None:
    table = resources["CheckpointTable"]
    assert table["Type"] == "AWS::DynamoDB::Table"
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"
    properties = table["Properties"]
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["KeySchema"] == [{"AttributeName": "user_id", "KeyType": "HASH"}]
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["SSESpecification"] == {"SSEEnabled": True}


def test_the_bucket_is_private_versioned_encrypted_and_tls_only(resources: dict[str, Any]) -> None:
    bucket = resources["ForwardedBucket"]
    assert bucket["Condition"] == "UseS3"
    assert bucket["DeletionPolicy"] == bucket["UpdateReplacePolicy"] == "Retain"
    properties = bucket["Properties"]
    assert properties["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert properties["OwnershipControls"] == {
        "Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]
    }
    assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
    (rule,) = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms"}

    policy = resources["ForwardedBucketPolicy"]
    assert policy["Condition"] == "UseS3"
    assert policy["Properties"]["Bucket"] == {"Ref": "ForwardedBucket"}
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Action"] == "s3:*"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert statement["Resource"] == [
        {"Fn::GetAtt": ["ForwardedBucket", "Arn"]},
        {"Fn::Sub": "${ForwardedBucket.Arn}/*"},
    ]


def test_log_groups_have_a_retention(resources: dict[str, Any]) -> None:
    forwarded = resources["ForwardedLogGroup"]
    assert forwarded["Condition"] == "UseCloudWatch"
    assert forwarded["DeletionPolicy"] == "Retain"
    assert forwarded["Properties"]["RetentionInDays"] == {"Ref": "LogGroupRetentionDays"}
    own = resources["ForwarderFunctionLogGroup"]["Properties"]
    assert own["LogGroupName"] == {"Fn::Sub": "/aws/lambda/${ForwarderFunction}"}
    assert "RetentionInDays" in own


def test_every_resource_is_named_in_the_outputs_with_its_condition(
    template: dict[str, Any],
) -> None:
    named: dict[str, set[str | None]] = {}
    for output in template["Outputs"].values():
        for node in walk(output["Value"]):
            if isinstance(node, dict) and ("Ref" in node or "Fn::GetAtt" in node):
                logical_id = node["Ref"] if "Ref" in node else node["Fn::GetAtt"][0]
                named.setdefault(logical_id, set()).add(output.get("Condition"))
    for logical_id, resource in template["Resources"].items():
        assert logical_id in named, f"{logical_id} has no output"
        assert named[logical_id] == {resource.get("Condition")}, logical_id


def test_the_alarm_watches_the_metric_powertools_emits(template: dict[str, Any]) -> None:
    alarm = template["Resources"]["GapsAlarm"]["Properties"]
    service = template["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
    assert alarm["Namespace"] == {"Ref": "MetricsNamespace"}
    assert alarm["MetricName"] == "Gaps"
    assert alarm["Dimensions"] == [{"Name": "service", "Value": service}]
    assert service == "auth0-user-log-forwarder"


def test_parameters_have_the_documented_defaults_and_allowed_values(
    template: dict[str, Any],
) -> None:
    parameters = template["Parameters"]
    defaults = {name: spec.get("Default") for name, spec in parameters.items()}
    assert (
        defaults
        | {
            "S3Prefix": "auth0-logs/",
            "StartFrom": "earliest",
            "OverlapWindowSeconds": 600,
            "RateLimitShare": 0.5,
            "RateLimitPerSecond": 2,
            "MaxConcurrentUsers": 4,
            "TimeMarginSeconds": 60,
            "FunctionTimeout": 240,
            "ScheduleExpression": "rate(5 minutes)",
            "MetricsNamespace": "Auth0LogForwarder",
            "Architecture": "arm64",
            "ReadMode": "auto",
        }
        == defaults
    )
    assert parameters["ReadMode"]["AllowedValues"] == ["auto", "per-user", "stream"]
    assert parameters["Architecture"]["AllowedValues"] == ["arm64", "x86_64"]
    assert parameters["Destinations"]["AllowedValues"] == DESTINATIONS
    assert 14 in parameters["LogGroupRetentionDays"]["AllowedValues"]
    assert "Default" not in parameters["Auth0Domain"]


def documented_variables() -> set[str]:
    """The variables of the README's configuration table."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for row in re.findall(r"^\| (`[A-Z0-9_]+`(?: / `[A-Z0-9_]+`)*) \|", section, re.M):
        names.update(part.strip(" `") for part in row.split("/"))
    return names


def test_the_function_declares_every_documented_variable(template: dict[str, Any]) -> None:
    expected = documented_variables()
    assert {"CHECKPOINT_TABLE", "AUTH0_CLIENT_SECRET", "AWS_ENDPOINT_URL"} <= expected
    assert expected == set(function_variables(template)) - POWERTOOLS_VARIABLES


def test_local_only_variables_are_empty_in_the_template(template: dict[str, Any]) -> None:
    # They exist only so that `sam local invoke --env-vars` can set them; AWS never gets values.
    variables = function_variables(template)
    assert {name: variables[name] for name in LOCAL_ONLY_VARIABLES} == dict.fromkeys(
        LOCAL_ONLY_VARIABLES, ""
    )


def test_env_json_sets_only_variables_the_template_declares(template: dict[str, Any]) -> None:
    # SAM CLI silently ignores --env-vars entries the template does not declare.
    env = json.loads((ROOT / "events" / "env.json").read_text(encoding="utf-8"))
    assert list(env) == ["ForwarderFunction"]
    assert set(env["ForwarderFunction"]) <= set(function_variables(template))
    assert all(isinstance(value, str) for value in env["ForwarderFunction"].values())
    assert "not-a-real-secret" in env["ForwarderFunction"]["AUTH0_CLIENT_SECRET"]


def test_function_environment_resolves_the_template_for_a_local_stack() -> None:
    # GIVEN names of a locally deployed stack with S3 only
    resources = DeployedResources(
        table_name="t-CheckpointTable",
        log_group=None,
        bucket="t-bucket",
        secret_id="secret/name",
        queue_url=None,
        stack_name="t",
    )
    # WHEN the function's environment is built from the template
    env = function_environment(
        resources,
        auth0_domain="example.eu.auth0.com",
        auth0_base_url="http://127.0.0.1:8080",
        watched_user_ids=["auth0|a", "auth0|b"],
        destinations="s3",
        MAX_CONCURRENT_USERS="2",
    )
    # THEN references resolve to the local names and the parameters' defaults
    assert env["CHECKPOINT_TABLE"] == "t-CheckpointTable"
    assert env["S3_BUCKET"] == "t-bucket"
    assert env["LOG_GROUP_NAME"] == ""
    assert env["AUTH0_CREDENTIALS_SECRET"] == "secret/name"
    assert env["WATCHED_USER_IDS"] == "auth0|a,auth0|b"
    assert env["DESTINATIONS"] == "s3"
    assert env["AUTH0_BASE_URL"] == "http://127.0.0.1:8080"
    assert env["AUTH0_RATE_LIMIT_SHARE"] == "0.5"
    assert env["MAX_CONCURRENT_USERS"] == "2"
    assert env["POWERTOOLS_SERVICE_NAME"] == "auth0-user-log-forwarder"


def test_deploy_template_creates_what_the_template_declares(template: dict[str, Any]) -> None:
    # moto keeps its state per process, shared by every server: hence the unique stack name.
    with LocalAws() as aws:
        # GIVEN a local deployment with CloudWatch only
        deployed = deploy_template(aws, stack_name="tpl", destinations="cloudwatch")
        # THEN the table has the template's key schema and settings
        table = aws.client("dynamodb").describe_table(TableName=deployed.table_name)["Table"]
        properties = template["Resources"]["CheckpointTable"]["Properties"]
        assert table["KeySchema"] == properties["KeySchema"]
        assert table["AttributeDefinitions"] == properties["AttributeDefinitions"]
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        # AND the log group has a generated name (none is fixed, so that the stack can be
        # deployed again after `sam delete` kept the old group) and the default retention
        assert "LogGroupName" not in template["Resources"]["ForwardedLogGroup"]["Properties"]
        (group,) = aws.client("logs").describe_log_groups(logGroupNamePrefix="tpl-")["logGroups"]
        assert group["logGroupName"] == deployed.log_group == "tpl-ForwardedLogGroup"
        assert (
            group["retentionInDays"] == template["Parameters"]["LogGroupRetentionDays"]["Default"]
        )
        # AND no bucket, since S3 was not chosen; the queue and the secret exist
        assert deployed.bucket is None
        buckets = [bucket["Name"] for bucket in aws.client("s3").list_buckets()["Buckets"]]
        assert not [name for name in buckets if name.startswith("tpl-")]
        assert deployed.queue_url
        secret = aws.client("secretsmanager").get_secret_value(SecretId=deployed.secret_id)
        assert set(json.loads(secret["SecretString"])) == {"client_id", "client_secret"}


def test_the_handler_the_template_names_exists() -> None:
    handler_file = ROOT / "src" / "log_forwarder" / "app.py"
    if not handler_file.exists():
        pytest.skip("src/log_forwarder/app.py is not written yet")
    assert re.search(r"^def lambda_handler\(", handler_file.read_text(encoding="utf-8"), re.M)


def test_template_path_points_at_the_repository_template() -> None:
    assert Path(TEMPLATE_PATH) == ROOT / "template.yaml"
    assert (ROOT / "src" / "log_forwarder").is_dir()


# Every AWS operation the function's code calls, and the IAM action it needs. A call the code
# gains without a row here fails the test below, so the template cannot fall behind the code.
IAM_ACTION_OF_CALL = {
    "batch_get_item": "dynamodb:BatchGetItem",
    "update_item": "dynamodb:UpdateItem",
    "scan": "dynamodb:Scan",
    "create_log_stream": "logs:CreateLogStream",
    "put_log_events": "logs:PutLogEvents",
    "get_log_events": "logs:GetLogEvents",
    "put_object": "s3:PutObject",
    "get_object": "s3:GetObject",
}


def aws_calls_in_code() -> set[str]:
    calls: set[str] = set()
    for path in (ROOT / "src" / "log_forwarder").rglob("*.py"):
        calls.update(re.findall(r"self\._client\.([a-z_]+)\b", path.read_text(encoding="utf-8")))
    # The Auth0 client's own methods share the attribute name; they are not AWS calls.
    return calls - {"user_logs", "search_logs", "get", "post", "meta"}


def test_the_role_grants_every_aws_call_the_code_makes(translated: dict[str, Any]) -> None:
    # GIVEN the operations the code calls on its boto3 clients
    calls = aws_calls_in_code()
    assert {"put_log_events", "put_object", "update_item"} <= calls
    unknown = calls - set(IAM_ACTION_OF_CALL)
    assert not unknown, f"add the IAM action of {sorted(unknown)} to IAM_ACTION_OF_CALL"
    # THEN the function's role allows each of them (destinations only when they are chosen)
    granted = {
        action
        for _, statement in role_statements(translated)
        for action in (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
    }
    needed = {IAM_ACTION_OF_CALL[call] for call in calls}
    missing = {
        action
        for action in needed - granted
        if action.split(":")[0] in {s.split(":")[0] for s in granted}
    }
    assert not missing, f"the role lacks {sorted(missing)}"


def test_the_readme_lists_every_metric_the_function_emits() -> None:
    from log_forwarder.report import METRICS

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("| metric | what it counts |") :]
    table = table[: table.index("\n\n")]
    # The metric names: the backquoted words of each row's first cell.
    listed = {
        name
        for row in table.splitlines()[2:]
        for name in re.findall(r"`([A-Za-z0-9_]+)`", row.split("|")[1])
    }
    assert listed == {name for name, _unit, _value in METRICS}
