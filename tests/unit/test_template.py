"""template.yaml: lint-clean, translatable by SAM, least privilege, and consistent with the code,
the design notes and the events/ files."""

from __future__ import annotations

import ast
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
    _Resolver,
    deploy_template,
    function_environment,
    load_template,
)
from log_forwarder.sinks.registry import NAMES, REGISTRY, combinations, setting_variables

ROOT = TEMPLATE_PATH.parent
# Every choice of the destinations the registry declares (the Destinations parameter allows
# each); the modes below deploy each destination alone, and all of them at once.
DESTINATIONS = combinations()
EACH_AND_ALL = [*NAMES, ",".join(NAMES)]
TENANTS_PARAMETER = "/auth0-user-log-forwarder/tenants"
REALTIME_SOURCE = "aws.partner/auth0.com/acme-7b2c9f0e-0d3a-4c1e-9a55-1f2e3d4c5b6a/auth0.logs"
# (Destinations, TenantsParameterName, RealtimeEventSourceName): one tenant with each destination
# choice, then many, then one with the real-time path.
MODES = (
    [(d, "", "") for d in EACH_AND_ALL]
    + [(d, TENANTS_PARAMETER, "") for d in EACH_AND_ALL]
    + [(",".join(NAMES), "", REALTIME_SOURCE)]
)
FUNCTIONS = ["ForwarderFunction", "TenantWorkerFunction", "RealtimeFunction"]
LOCAL_ONLY_VARIABLES = {
    "AUTH0_BASE_URL",
    "AUTH0_CLIENT_ID",
    "AUTH0_CLIENT_SECRET",
    "AWS_ENDPOINT_URL",
    # Tenant entries may name these base URLs: the simulator's, never in AWS.
    "TENANT_LOCAL_BASE_URLS",
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


def function_variables(
    template: dict[str, Any], function: str = "ForwarderFunction"
) -> dict[str, Any]:
    return {
        **template["Globals"]["Function"]["Environment"]["Variables"],
        **template["Resources"][function]["Properties"]["Environment"]["Variables"],
    }


def mode_parameters(
    destinations: str, tenants_parameter: str = "", realtime: str = ""
) -> dict[str, str]:
    return {
        "Auth0Domain": "" if tenants_parameter else "example.eu.auth0.com",
        "Destinations": destinations,
        "TenantsParameterName": tenants_parameter,
        "RealtimeEventSourceName": realtime,
    }


def sam_translate(
    template: dict[str, Any], destinations: str, tenants_parameter: str = "", realtime: str = ""
) -> dict[str, Any]:
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    sam = copy.deepcopy(template)
    # `sam build`/`sam package` replace the local CodeUri with an S3 location before the
    # transform runs; the translator refuses anything else.
    for function in FUNCTIONS:
        sam["Resources"][function]["Properties"]["CodeUri"] = "s3://bucket/code.zip"
    session = boto3.session.Session(
        region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    translator = Translator({}, Parser(), boto_session=session)
    translated: dict[str, Any] = translator.translate(
        sam,
        mode_parameters(destinations, tenants_parameter, realtime),
        get_managed_policy_map=dict,
    )
    return translated


def mode_id(mode: tuple[str, str, str]) -> str:
    return f"{mode[0]}-{'many' if mode[1] else 'one'}{'-realtime' if mode[2] else ''}"


Mode = tuple[str, str, str]


@pytest.fixture(scope="module", params=MODES, ids=mode_id)
def mode(request: pytest.FixtureRequest) -> Mode:
    return tuple(request.param)  # type: ignore[return-value]


@pytest.fixture(scope="module")
def translated(mode: Mode, template: dict[str, Any]) -> dict[str, Any]:
    return sam_translate(template, *mode)


def resolver_for(translated: dict[str, Any], mode: Mode) -> _Resolver:
    """Evaluates the translated template's conditions as CloudFormation would in this mode."""
    return _Resolver(translated, mode_parameters(*mode), stack_name="tpl")


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


def test_sam_translates_it_for_every_destination_and_mode(
    translated: dict[str, Any], mode: Mode
) -> None:
    resolver = resolver_for(translated, mode)
    functions = [f for f in of_type(translated, "AWS::Lambda::Function") if resolver.active(f)]
    # The worker exists with many tenants only, the real-time function when its event source is
    # named; one tenant keeps the stack it always had.
    expected = ["ForwarderFunction"]
    expected += ["TenantWorkerFunction"] if mode[1] else []
    expected += ["RealtimeFunction"] if mode[2] else []
    assert sorted(functions) == sorted(expected)


def test_the_function_runs_alone_on_a_current_runtime(translated: dict[str, Any]) -> None:
    properties = translated["Resources"]["ForwarderFunction"]["Properties"]
    assert properties["Runtime"] in {"python3.12", "python3.13"}
    # arm64 unless overridden (x86_64 lets `sam local invoke` run without emulation)
    assert properties["Architectures"] == [{"Ref": "Architecture"}]
    assert properties["MemorySize"] == 256  # the benchmark's recommendation (docs/benchmark.md)
    assert properties["Timeout"] == {"Ref": "FunctionTimeout"}
    assert properties["ReservedConcurrentExecutions"] == 1
    # One tenant: the forwarder, as always. Many: the same scheduled function only enqueues.
    assert properties["Handler"] == {
        "Fn::If": [
            "MultiTenant",
            "log_forwarder.fanout.lambda_handler",
            "log_forwarder.app.lambda_handler",
        ]
    }
    assert properties["LoggingConfig"] == {"LogFormat": "JSON"}


def test_the_schedule_is_a_classic_eventbridge_rule(translated: dict[str, Any]) -> None:
    # The events/ file reproduces what a classic rule sends (ScheduleV2 would send its Input).
    rules = of_type(translated, "AWS::Events::Rule")
    assert [
        rule["Properties"]["ScheduleExpression"]
        for rule in rules.values()
        if "ScheduleExpression" in rule["Properties"]
    ] == [{"Ref": "ScheduleExpression"}]
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
    (config,) = [
        config
        for config in of_type(translated, "AWS::Lambda::EventInvokeConfig").values()
        if config["Properties"]["FunctionName"] == {"Ref": "ForwarderFunction"}
    ]
    properties = config["Properties"]
    assert properties["MaximumRetryAttempts"] == 0
    # A throttled tick must expire before the next one arrives, or ticks pile up.
    period = schedule_period_seconds(template["Parameters"]["ScheduleExpression"]["Default"])
    assert properties["MaximumEventAgeInSeconds"] < period
    assert properties["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["FailureQueue", "Arn"]
    }
    assert translated["Resources"]["FailureQueue"]["Properties"]["SqsManagedSseEnabled"] is True


ROLES = {
    "ForwarderFunction": "ForwarderFunctionRole",
    "TenantWorkerFunction": "TenantWorkerRole",
    "RealtimeFunction": "RealtimeFunctionRole",
}


def role_statements(
    translated: dict[str, Any], role_id: str = "ForwarderFunctionRole"
) -> list[tuple[str | None, dict[str, Any]]]:
    """(condition or None, statement) for every inline statement of a role."""
    role = translated["Resources"][role_id]["Properties"]
    found: list[tuple[str | None, dict[str, Any]]] = []
    for policy in role["Policies"]:
        condition = None
        if "Fn::If" in policy:
            condition, policy, otherwise = policy["Fn::If"]
            assert otherwise == {"Ref": "AWS::NoValue"}
        found.extend((condition, statement) for statement in policy["PolicyDocument"]["Statement"])
    return found


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def granted(translated: dict[str, Any], role_id: str, mode: Mode) -> dict[str, list[Any]]:
    """IAM action → the resources it is granted on, by the statements active in this mode."""
    resolver = resolver_for(translated, mode)
    actions: dict[str, list[Any]] = {}
    for condition, statement in role_statements(translated, role_id):
        if condition is None or resolver.condition(condition):
            for action in as_list(statement["Action"]):
                actions.setdefault(action, []).extend(as_list(statement["Resource"]))
    return actions


@pytest.mark.parametrize("role_id", ROLES.values())
def test_no_statement_grants_data_actions_on_every_resource(
    translated: dict[str, Any], role_id: str
) -> None:
    for _, statement in role_statements(translated, role_id):
        assert "*" not in as_list(statement["Resource"]), statement
    role = translated["Resources"][role_id]["Properties"]
    managed = [json.dumps(arn).strip('"}').rsplit("/", 1)[-1] for arn in role["ManagedPolicyArns"]]
    # Not AWSLambdaSQSQueueExecutionRole, which SAM attaches for an SQS event: it may receive
    # and delete on every queue of the account.
    assert managed == ["AWSLambdaBasicExecutionRole"]


def test_each_permission_is_scoped_to_its_resource(translated: dict[str, Any], mode: Mode) -> None:
    destinations, tenants, realtime = mode
    logs_group = {
        "Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}"
        ":log-group:${ForwardedLogGroup}:*"
    }
    bucket = {"Fn::Sub": "${ForwardedBucket.Arn}/${S3Prefix}*"}
    table = {"Fn::GetAtt": ["CheckpointTable", "Arn"]}
    parameter = {
        "Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}"
        ":parameter${TenantsParameterName}"
    }
    tenant_queue = {"Fn::GetAtt": ["TenantQueue", "Arn"]}
    # Every function that runs rules may read the rule packs, and do nothing else with them.
    rule_packs = {"Fn::GetAtt": ["RulePacksTable", "Arn"]}

    def on(resource: Any, *actions: str) -> dict[str, list[Any]]:
        return {action: [resource] for action in actions}

    forwarding = on(table, "dynamodb:BatchGetItem", "dynamodb:UpdateItem", "dynamodb:Scan")
    if "cloudwatch" in destinations:
        forwarding |= on(
            logs_group, "logs:CreateLogStream", "logs:PutLogEvents", "logs:GetLogEvents"
        )
    if "s3" in destinations:
        forwarding |= on(bucket, "s3:PutObject", "s3:GetObject")
    if "firehose" in destinations:
        # The stack's own stream, or the one FirehoseStreamName names
        forwarding |= on(
            {
                "Fn::If": [
                    "OwnFirehoseStream",
                    {"Fn::GetAtt": ["ForwardedDeliveryStream", "Arn"]},
                    {
                        "Fn::Sub": "arn:${AWS::Partition}:firehose:${AWS::Region}:"
                        "${AWS::AccountId}:deliverystream/${FirehoseStreamName}"
                    },
                ]
            },
            "firehose:PutRecordBatch",
        )
    # Findings go to the bus the stack names (the default one, by default)
    forwarding |= on(
        {
            "Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}"
            ":event-bus/${FindingsEventBus}"
        },
        "events:PutEvents",
    )
    # The on-failure destination of the scheduled invocations, SAM's statement.
    failure_queue = {"sqs:SendMessage": [{"Fn::GetAtt": ["FailureQueue", "Arn"]}]}
    scheduler = granted(translated, "ForwarderFunctionRole", mode)
    if not tenants:
        # GIVEN one tenant: the scheduled function forwards, reads its watch list table, and
        # may read its one secret
        secret = scheduler.pop("secretsmanager:GetSecretValue")
        assert "secret:${Auth0CredentialsSecretName}-??????" in json.dumps(secret)
        scan = scheduler.pop("dynamodb:Scan")
        assert sorted(map(json.dumps, scan)) == sorted(
            map(json.dumps, [table, {"Fn::GetAtt": ["WatchListTable", "Arn"]}, rule_packs])
        )
        forwarding.pop("dynamodb:Scan")
        pushed_table = {"Fn::GetAtt": ["PushedEventsTable", "Arn"]}
        # AND the reads look up (and confirm) what the real-time path delivered, with real time
        # on or off (turned off, its memory is still what keeps them from repeating it)
        reads = scheduler.pop("dynamodb:Query"), scheduler["dynamodb:UpdateItem"].pop()
        assert reads == ([pushed_table], pushed_table)
        assert scheduler == {**forwarding, **failure_queue}
        if realtime:
            # AND the real-time function does what the scheduled one does, but for Auth0's
            # secret (it never asks Auth0 for a token), and its event source reads its queue
            # (the function shortens the visibility of what it hands back: requeue.py)
            pushed = granted(translated, "RealtimeFunctionRole", mode)
            assert sorted(map(json.dumps, pushed.pop("dynamodb:Scan"))) == sorted(
                map(json.dumps, scan)
            )
            queue = {"Fn::GetAtt": ["RealtimeQueue", "Arn"]}
            polling = on(
                queue,
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
                "sqs:ChangeMessageVisibility",
            )
            memory = on(pushed_table, "dynamodb:PutItem", "dynamodb:Query")
            assert pushed == {**forwarding, **failure_queue, **polling, **memory}
        return
    # GIVEN many tenants: the scheduled function reads the document and enqueues, nothing else
    assert scheduler == {
        "ssm:GetParameter": [parameter],
        "sqs:SendMessage": [{"Fn::GetAtt": ["FailureQueue", "Arn"]}, tenant_queue],
    }
    # AND the worker forwards, reads the tenants' secrets under the prefix, and handles its queue
    worker = granted(translated, "TenantWorkerRole", mode)
    secrets = worker.pop("secretsmanager:GetSecretValue")
    assert json.dumps(secrets).endswith(':secret:${TenantSecretsPrefix}*"}]')
    assert worker == {
        **forwarding,
        "dynamodb:Scan": [table, rule_packs],
        "ssm:GetParameter": [parameter],
        **on(
            tenant_queue,
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:GetQueueAttributes",
            "sqs:ChangeMessageVisibility",
        ),
        "sqs:SendMessage": [{"Fn::GetAtt": ["TenantDeadLetterQueue", "Arn"]}],
    }


@pytest.mark.parametrize("logical_id", ["CheckpointTable", "WatchListTable"])
def test_the_tables_are_kept_recoverable_and_encrypted(
    resources: dict[str, Any], logical_id: str
) -> None:
    table = resources[logical_id]
    assert table["Type"] == "AWS::DynamoDB::Table"
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"
    properties = table["Properties"]
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["KeySchema"] == [{"AttributeName": "user_id", "KeyType": "HASH"}]
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["SSESpecification"] == {"SSEEnabled": True}


def test_the_rule_packs_table_is_kept_recoverable_and_encrypted(resources: dict[str, Any]) -> None:
    table = resources["RulePacksTable"]
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"
    properties = table["Properties"]
    assert properties["KeySchema"] == [{"AttributeName": "pack", "KeyType": "HASH"}]
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["SSESpecification"] == {"SSEEnabled": True}


def test_the_bucket_is_private_versioned_encrypted_and_tls_only(resources: dict[str, Any]) -> None:
    bucket = resources["ForwardedBucket"]
    # (the s3 destination's, and the stack's own Firehose stream's)
    assert bucket["Condition"] == "HasBucket"
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
    assert policy["Condition"] == "HasBucket"
    assert policy["Properties"]["Bucket"] == {"Ref": "ForwardedBucket"}
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Action"] == "s3:*"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert statement["Resource"] == [
        {"Fn::GetAtt": ["ForwardedBucket", "Arn"]},
        {"Fn::Sub": "${ForwardedBucket.Arn}/*"},
    ]


@pytest.mark.parametrize(
    ("destinations", "stream_name", "bucket", "own_stream"),
    [
        ("s3", "", True, False),
        ("firehose", "", True, True),
        ("cloudwatch,firehose", "operators-stream", False, False),
        ("s3,firehose", "operators-stream", True, False),
        ("cloudwatch", "operators-stream", False, False),
    ],
)
def test_a_bucket_and_a_stream_exist_where_a_destination_writes_there(
    template: dict[str, Any], destinations: str, stream_name: str, bucket: bool, own_stream: bool
) -> None:
    # The stack's own Firehose stream (no FirehoseStreamName) delivers into the stack's bucket;
    # an operator's stream is theirs: no bucket, no stream, no delivery role for it.
    parameters = {"Destinations": destinations, "FirehoseStreamName": stream_name}
    resolver = _Resolver(template, parameters, stack_name="tpl")
    assert resolver.active("ForwardedBucket") is bucket
    assert resolver.active("ForwardedDeliveryStream") is own_stream
    assert resolver.active("FirehoseDeliveryRole") is own_stream


def test_the_stacks_firehose_stream_is_encrypted_and_writes_gzipped_lines_under_its_prefix(
    resources: dict[str, Any],
) -> None:
    stream = resources["ForwardedDeliveryStream"]["Properties"]
    assert stream["DeliveryStreamType"] == "DirectPut"
    assert stream["DeliveryStreamEncryptionConfigurationInput"] == {"KeyType": "AWS_OWNED_CMK"}
    s3 = stream["ExtendedS3DestinationConfiguration"]
    assert s3["BucketARN"] == {"Fn::GetAtt": ["ForwardedBucket", "Arn"]}
    assert s3["RoleARN"] == {"Fn::GetAtt": ["FirehoseDeliveryRole", "Arn"]}
    assert s3["CompressionFormat"] == "GZIP"
    assert s3["Prefix"] == {"Ref": "FirehoseS3Prefix"}
    assert s3["ErrorOutputPrefix"] == {"Fn::Sub": "${FirehoseS3Prefix}errors/"}


def test_the_firehose_delivery_role_writes_under_its_prefix_only(
    resources: dict[str, Any],
) -> None:
    role = resources["FirehoseDeliveryRole"]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "firehose.amazonaws.com"}
    # Only this account's Firehose (AWS's guide: the account id as the external id)
    assert trust["Condition"] == {"StringEquals": {"sts:ExternalId": {"Ref": "AWS::AccountId"}}}
    (policy,) = role["Policies"]
    objects, bucket = policy["PolicyDocument"]["Statement"]
    assert objects["Resource"] == {"Fn::Sub": "${ForwardedBucket.Arn}/${FirehoseS3Prefix}*"}
    assert sorted(objects["Action"]) == ["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"]
    assert bucket["Resource"] == {"Fn::GetAtt": ["ForwardedBucket", "Arn"]}
    assert sorted(bucket["Action"]) == [
        "s3:GetBucketLocation",
        "s3:ListBucket",
        "s3:ListBucketMultipartUploads",
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
            "TenantsParameterName": "",
            "TenantSecretsPrefix": "auth0-user-log-forwarder/",
            "MaxConcurrentTenants": 5,
            "S3Prefix": "auth0-logs/",
            "StartFrom": "earliest",
            "OverlapWindowSeconds": 600,
            "RateLimitShare": 0.5,
            "RateLimitPerSecond": 0,
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
    # The default secret is under the prefix the workers may read.
    assert defaults["Auth0CredentialsSecretName"].startswith(defaults["TenantSecretsPrefix"])


@pytest.mark.parametrize(
    ("domain", "tenants", "accepted"),
    [
        ("example.eu.auth0.com", "", True),
        ("", "", False),  # one tenant, and no domain: refused before anything is created
        ("", TENANTS_PARAMETER, True),
    ],
)
def test_a_single_tenant_stack_needs_its_domain(
    template: dict[str, Any], domain: str, tenants: str, accepted: bool
) -> None:
    # GIVEN the template's rules / WHEN they are evaluated as CloudFormation does at deploy time
    resolver = _Resolver(
        template, {"Auth0Domain": domain, "TenantsParameterName": tenants}, stack_name="tpl"
    )
    verdicts = [
        all(resolver.resolve(a["Assert"]) for a in rule["Assertions"])
        for rule in template["Rules"].values()
        if resolver.resolve(rule.get("RuleCondition", True))
    ]
    # THEN only a stack with one tenant and no domain is refused
    assert all(verdicts) is accepted


def documented_variables() -> set[str]:
    """The variables of the README's configuration table."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for row in re.findall(r"^\| (`[A-Z0-9_]+`(?: / `[A-Z0-9_]+`)*) \|", section, re.M):
        names.update(part.strip(" `") for part in row.split("/"))
    return names


def test_the_readme_lists_every_parameter_with_its_default(template: dict[str, Any]) -> None:
    # The deploy table of the README: one parameter (or a few, for the plain operational ones)
    # per row, its default as the template has it ("empty" for an empty string).
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("| parameter | default | meaning |") :]
    table = table[: table.index("\n\n")]
    documented: dict[str, str] = {}
    for row in table.splitlines()[2:]:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        for name in re.findall(r"`([A-Za-z0-9]+)`", cells[0]):
            documented[name] = cells[1].strip("`")
    parameters = template["Parameters"]
    assert set(documented) == set(parameters)
    for name, default in documented.items():
        if not default:
            continue  # the operational ones, listed together
        expected = parameters[name].get("Default")
        if default.startswith("(required"):
            assert expected in (None, ""), name
        else:
            assert default == ("empty" if expected == "" else str(expected)), name


def test_the_readme_counts_what_sam_deploy_guided_asks(template: dict[str, Any]) -> None:
    # GIVEN the README's comparison of `init` with `sam deploy --guided`
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    said = re.search(
        r"`sam deploy --guided` asks (\d+): the stack name and region, the (\d+) parameters "
        r"below in template order, bare, and (\d+) of its own",
        readme,
    )
    assert said is not None
    asked, parameters, own = (int(n) for n in said.groups())
    # THEN it counts the template's parameters as they are (SAM asks every one)
    assert parameters == len(template["Parameters"])
    assert asked == 2 + parameters + own


def test_each_destination_s_condition_holds_exactly_where_destinations_names_it(
    template: dict[str, Any],
) -> None:
    for destination in REGISTRY:
        for choice in DESTINATIONS:
            resolver = _Resolver(template, {"Destinations": choice}, stack_name="tpl")
            holds = resolver.condition(destination.template_condition)
            assert holds is (destination.name in choice.split(",")), (destination.name, choice)


def test_every_destination_setting_is_declared_for_every_function(
    template: dict[str, Any],
) -> None:
    declared = template["Globals"]["Function"]["Environment"]["Variables"]
    assert {"DESTINATIONS", *setting_variables()} <= set(declared)


def test_the_dashboard_draws_what_each_destination_accepted(template: dict[str, Any]) -> None:
    body = json.dumps(template["Resources"]["Dashboard"]["Properties"]["DashboardBody"])
    for destination in REGISTRY:
        assert f'\\"EventsDelivered_{destination.name}\\"' in body, destination.name


def test_the_functions_declare_every_documented_variable(template: dict[str, Any]) -> None:
    expected = documented_variables()
    assert {"CHECKPOINT_TABLE", "AUTH0_CLIENT_SECRET", "AWS_ENDPOINT_URL"} <= expected
    assert {"TENANTS_PARAMETER", "TENANT_QUEUE_URL", "TENANT_SECRETS_PREFIX"} <= expected
    declared = {name for f in FUNCTIONS for name in function_variables(template, f)}
    assert expected == declared - POWERTOOLS_VARIABLES


def test_every_detection_setting_is_a_parameter_of_the_stack(template: dict[str, Any]) -> None:
    # An operator tunes detections by deploying with a parameter, not by editing the template
    # (which the next `git pull` would conflict with); each is bounded as the function is.
    parameters = template["Parameters"]
    for function in FUNCTIONS:
        variables = function_variables(template, function)
        detection = {k: v for k, v in variables.items() if k.startswith("DETECTION")}
        assert len(detection) == 7, function
        for name, value in detection.items():
            assert isinstance(value, dict) and value.get("Ref") in parameters, (function, name)
    assert parameters["NewSourceBy"]["AllowedValues"] == ["country"]
    assert parameters["DetectionsTenantWide"]["AllowedValues"] == ["true", "false"]
    assert "DETECTION_NEW_SOURCE_WARMUP_LOGINS" not in variables  # not read: refused by name
    bounds = {
        "DetectionDedupMinutes": (60, 0, 1440),
    }
    for name, (default, low, high) in bounds.items():
        spec = parameters[name]
        assert (spec["Default"], spec["MinValue"], spec["MaxValue"]) == (default, low, high)


def test_the_worker_gets_the_deployment_wide_variables_as_the_scheduled_function_does(
    template: dict[str, Any],
) -> None:
    # GIVEN both functions' variables
    scheduled = function_variables(template, "ForwarderFunction")
    worker = function_variables(template, "TenantWorkerFunction")
    # THEN the worker has every one except those the tenants document gives per tenant, each
    # with the same value (so a parameter change reaches both)
    # (the watch list table names one tenant's users: with many, the document has the lists)
    per_tenant = {"AUTH0_DOMAIN", "AUTH0_CREDENTIALS_SECRET", "WATCHED_USER_IDS", "WATCH_TABLE"}
    local_auth0 = {"AUTH0_BASE_URL", "AUTH0_CLIENT_ID", "AUTH0_CLIENT_SECRET"}
    expected = {k: v for k, v in scheduled.items() if k not in per_tenant | local_auth0}
    expected["TENANT_QUEUE_URL"] = {"Ref": "TenantQueue"}
    expected["TENANT_DEAD_LETTER_QUEUE_URL"] = {"Ref": "TenantDeadLetterQueue"}
    assert worker == expected


def test_local_only_variables_are_empty_in_the_template(template: dict[str, Any]) -> None:
    # They exist only so that `sam local invoke --env-vars` can set them; AWS never gets values.
    for function in FUNCTIONS:
        variables = function_variables(template, function)
        local = {name: variables[name] for name in LOCAL_ONLY_VARIABLES if name in variables}
        assert local == dict.fromkeys(local, "")
    assert set(function_variables(template)) >= LOCAL_ONLY_VARIABLES


def test_env_json_sets_only_variables_the_template_declares(template: dict[str, Any]) -> None:
    # SAM CLI silently ignores --env-vars entries the template does not declare.
    env = json.loads((ROOT / "events" / "env.json").read_text(encoding="utf-8"))
    assert list(env) == ["ForwarderFunction", "RealtimeFunction"]
    for function, variables in env.items():
        assert set(variables) <= set(function_variables(template, function)), function
        assert all(isinstance(value, str) for value in variables.values())
    assert "not-a-real-secret" in env["ForwarderFunction"]["AUTH0_CLIENT_SECRET"]
    # The real-time function never calls Auth0: no client secret, local or not.
    assert "AUTH0_CLIENT_SECRET" not in env["RealtimeFunction"]
    batch = json.loads((ROOT / "events" / "realtime-event.json").read_text(encoding="utf-8"))
    realtime = json.loads(batch["Records"][0]["body"])  # an SQS batch of the rule's events
    assert realtime["source"] == env["RealtimeFunction"]["REALTIME_EVENT_SOURCE"]
    assert realtime["detail"]["log_id"] == realtime["detail"]["data"]["log_id"]


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
    # 0: learn the rate from Auth0's headers (a CloudFormation number cannot be empty)
    assert env["AUTH0_RATE_LIMIT_PER_SECOND"] == "0"
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


def test_many_tenants_deploy_a_fifo_tenant_queue_with_a_dead_letter_queue(
    template: dict[str, Any],
) -> None:
    with LocalAws() as aws:
        # GIVEN a stack with one tenant and one with many
        one = deploy_template(aws, stack_name="tpl-one", destinations="s3")
        many = deploy_template(
            aws, stack_name="tpl-many", destinations="s3", tenants_parameter=TENANTS_PARAMETER
        )
        # THEN one tenant has no tenant queue at all
        assert set(one.queue_urls) == {"FailureQueue"}
        assert set(many.queue_urls) == {"FailureQueue", "TenantQueue", "TenantDeadLetterQueue"}
        # AND the tenant queue is FIFO, hides a message as long as the worker may run, keeps
        # ticks an hour, and moves a message failed three times to a FIFO dead-letter queue
        sqs = aws.client("sqs")
        queue = sqs.get_queue_attributes(
            QueueUrl=many.queue_urls["TenantQueue"], AttributeNames=["All"]
        )["Attributes"]
        dead = sqs.get_queue_attributes(
            QueueUrl=many.queue_urls["TenantDeadLetterQueue"], AttributeNames=["All"]
        )["Attributes"]
        assert queue["FifoQueue"] == dead["FifoQueue"] == "true"
        timeout = template["Parameters"]["FunctionTimeout"]["Default"]
        assert int(queue["VisibilityTimeout"]) == timeout
        assert int(queue["MessageRetentionPeriod"]) == 3600
        assert json.loads(queue["RedrivePolicy"]) == {
            "deadLetterTargetArn": dead["QueueArn"],
            "maxReceiveCount": 3,
        }


def test_the_worker_takes_one_tenant_per_invocation_and_reports_each_message(
    template: dict[str, Any],
) -> None:
    worker = template["Resources"]["TenantWorkerFunction"]
    assert worker["Condition"] == "MultiTenant"
    assert worker["Properties"]["Handler"] == "log_forwarder.worker.lambda_handler"
    # The queue's visibility must not be below the worker's timeout (the event source refuses
    # that); the worker runs with the Globals timeout, the queue's visibility is that parameter.
    assert "Timeout" not in worker["Properties"]
    assert template["Globals"]["Function"]["Timeout"] == {"Ref": "FunctionTimeout"}
    queue = template["Resources"]["TenantQueue"]["Properties"]
    assert queue["VisibilityTimeout"] == {"Ref": "FunctionTimeout"}
    (event,) = worker["Properties"]["Events"].values()
    assert event["Type"] == "SQS"
    assert event["Properties"] == {
        "Queue": {"Fn::GetAtt": ["TenantQueue", "Arn"]},
        "BatchSize": 1,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "ScalingConfig": {"MaximumConcurrency": {"Ref": "MaxConcurrentTenants"}},
    }
    # AND everything multi-tenant exists only with the condition
    for logical_id, resource in template["Resources"].items():
        if logical_id.startswith("Tenant"):
            assert resource.get("Condition") == "MultiTenant", logical_id


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
    "put_item": "dynamodb:PutItem",
    "query": "dynamodb:Query",
    "scan": "dynamodb:Scan",
    "create_log_stream": "logs:CreateLogStream",
    "put_log_events": "logs:PutLogEvents",
    "get_log_events": "logs:GetLogEvents",
    "put_object": "s3:PutObject",
    "get_object": "s3:GetObject",
    "put_events": "events:PutEvents",
    "put_record_batch": "firehose:PutRecordBatch",
    "get_parameter": "ssm:GetParameter",
    "send_message_batch": "sqs:SendMessage",
    "send_message": "sqs:SendMessage",
    "change_message_visibility": "sqs:ChangeMessageVisibility",
    "change_message_visibility_batch": "sqs:ChangeMessageVisibility",
    # Through Powertools' SecretsProvider (credentials.py), not a call of our own.
    "get_secret_value": "secretsmanager:GetSecretValue",
}
# What the Lambda service does with a function's role, not its code: polling the worker's SQS
# event source, sending a failed scheduled invocation to its on-failure destination.
SERVICE_ACTIONS = {
    "TenantWorkerFunction": {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"},
    "ForwarderFunction": {"sqs:SendMessage"},
    "RealtimeFunction": {
        "sqs:SendMessage",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
    },
}
# Reachable in the code, never called by the function: the real-time function builds the same
# runtime, but never asks Auth0 for a token (its role cannot read that secret; the pseudonym
# key, when set, is granted by a statement of its own, as for the others).
NEVER_CALLED = {
    "RealtimeFunction": {"secretsmanager:GetSecretValue"},
    # Only a push records its batch in the pushed-events table; the reads look it up. Only the
    # real-time function has a queue to hand messages back to (REALTIME_QUEUE_URL).
    "ForwarderFunction": {"dynamodb:PutItem", "sqs:ChangeMessageVisibility"},
    "TenantWorkerFunction": {"dynamodb:PutItem", "dynamodb:Query"},
}
PACKAGE = ROOT / "src" / "log_forwarder"
CLIENT_SERVICES = ("dynamodb", "events", "firehose", "logs", "s3", "secretsmanager", "ssm", "sqs")


def aws_operations() -> set[str]:
    """Every operation name (as boto3 spells its methods) of the services the code uses."""
    import botocore.session
    from botocore import xform_name

    session = botocore.session.get_session()
    return {
        xform_name(operation)
        for service in CLIENT_SERVICES
        for operation in session.get_service_model(service).operation_names
    }


def module_path(module: str) -> Path:
    relative = Path(*module.split(".")[1:])
    package = PACKAGE / relative / "__init__.py"
    return package if package.exists() else PACKAGE / relative.with_suffix(".py")


def imported_modules(module: str) -> set[str]:
    """The package's modules `module` imports, at any depth (itself included). runtime.py
    imports every destination's adapter too: the registry names them, and runtime builds the
    chosen ones (sinks/registry.py imports an adapter by its name only when it builds it)."""
    seen: set[str] = set()
    pending = [module]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        if current == "log_forwarder.runtime":
            pending.extend(destination.adapter for destination in REGISTRY)
        path = module_path(current)
        package = current if path.name == "__init__.py" else current.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            if not base.startswith("log_forwarder"):
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                pending.append(candidate if module_path(candidate).exists() else base)
    return seen


def aws_calls_of(modules: set[str]) -> set[str]:
    """The AWS operations these modules name on their clients (called, or handed on)."""
    operations = aws_operations()
    calls: set[str] = set()
    for module in modules:
        text = module_path(module).read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Attribute) and node.attr in operations:
                calls.add(node.attr)
        if "SecretsProvider" in text:
            calls.add("get_secret_value")
    return calls


def test_the_import_walk_sees_each_function_s_calls() -> None:
    # The walk itself: the scheduler in multi-tenant mode reaches no forwarding code at all,
    # and the worker no sending to the tenant queue.
    fanout = aws_calls_of(imported_modules("log_forwarder.fanout"))
    assert fanout == {"get_parameter", "send_message_batch"}
    worker = aws_calls_of(imported_modules("log_forwarder.worker"))
    assert {"put_log_events", "update_item", "change_message_visibility", "send_message"} <= worker
    assert "send_message_batch" not in worker


# The IAM service of each destination's calls (what a stack without it never grants).
DESTINATION_SERVICES = {"cloudwatch": "logs:", "s3": "s3:", "firehose": "firehose:"}


def test_every_destination_has_its_iam_service_named() -> None:
    assert set(DESTINATION_SERVICES) == set(NAMES)


def test_each_role_grants_exactly_the_aws_calls_its_function_makes(
    translated: dict[str, Any], mode: Mode
) -> None:
    resolver = resolver_for(translated, mode)
    for function in [f for f in FUNCTIONS if resolver.active(f)]:
        # GIVEN the operations reachable from the handler the template names in this mode
        handler = resolver.resolve(translated["Resources"][function]["Properties"]["Handler"])
        calls = aws_calls_of(imported_modules(handler.rpartition(".")[0]))
        unknown = calls - set(IAM_ACTION_OF_CALL)
        assert not unknown, f"add the IAM action of {sorted(unknown)} to IAM_ACTION_OF_CALL"
        needed = {IAM_ACTION_OF_CALL[call] for call in calls} - NEVER_CALLED.get(function, set())
        # (a destination not chosen is never called)
        chosen = mode[0].split(",")
        for name, service in DESTINATION_SERVICES.items():
            if name not in chosen:
                needed -= {a for a in needed if a.startswith(service)}
        # (only a push records in the pushed-events table; the reads of one tenant look it up,
        # real time on or off: many tenants have none)
        needed -= set() if mode[2] else {"dynamodb:PutItem"}
        needed -= {"dynamodb:Query"} if mode[1] else set()
        # WHEN the role's statements active in this mode are read
        role = set(granted(translated, ROLES[function], mode))
        # THEN it grants each call, and nothing else but what Lambda itself does with it
        assert needed - role == set(), f"{function}'s role lacks {sorted(needed - role)}"
        extra = role - needed - SERVICE_ACTIONS[function]
        assert not extra, f"{function}'s role grants unneeded {sorted(extra)}"


def test_the_readme_lists_every_metric_the_function_emits() -> None:
    from log_forwarder.report import METRICS

    readme = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    table = readme[readme.index("| metric | what it counts |") :]
    table = table[: table.index("\n\n")]
    # The metric names: the backquoted words of each row's first cell.
    listed = {
        name
        for row in table.splitlines()[2:]
        for name in re.findall(r"`([A-Za-z0-9_]+)`", row.split("|")[1])
    }
    assert listed == {name for name, _unit, _value in METRICS}


def test_every_checkov_skip_in_the_template_says_why(template: dict[str, Any]) -> None:
    skips = [
        (logical_id, skip)
        for logical_id, resource in template["Resources"].items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips, "checkov skips are expected to live in the template"
    for logical_id, skip in skips:
        assert re.fullmatch(r"CKV_AWS_\d+", skip["id"]), (logical_id, skip)
        assert len(str(skip.get("comment", "")).split()) >= 8, f"{logical_id}: say why"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "auth0|a",
        "auth0|a,google-oauth2|1098/odd id@x=y,samlp|corp|ana",
        "auth0|a, auth0|b",
        "auth0|a ,auth0|b",
        " auth0|a",
        "auth0|a;auth0|b",
        '["auth0|a"]',
        "'auth0|a'",
        "auth0|a,,auth0|b",
        "auth0|a,",
    ],
)
def test_the_watched_user_ids_parameter_refuses_what_the_function_would(
    template: dict[str, Any], value: str
) -> None:
    # GIVEN what an operator may type into WatchedUserIds at `sam deploy --guided`
    from log_forwarder.config import Settings
    from log_forwarder.exceptions import ConfigError

    pattern = template["Parameters"]["WatchedUserIds"]["AllowedPattern"]
    env = {
        "AUTH0_DOMAIN": "example.eu.auth0.com",
        "AUTH0_CREDENTIALS_SECRET": "s",
        "CHECKPOINT_TABLE": "t",
        "DESTINATIONS": "s3",
        "S3_BUCKET": "b",
        "WATCHED_USER_IDS": value,
    }
    try:
        Settings.from_env(env)
        accepted = True
    except ConfigError:
        accepted = False
    # THEN CloudFormation refuses at deploy time exactly what the function would refuse later
    assert bool(re.fullmatch(pattern, value)) == accepted


def test_tenant_wide_rules_widen_the_real_time_rule_to_every_user(
    template: dict[str, Any],
) -> None:
    # GIVEN the real-time path on with a watch list in the pattern
    base = {
        "Auth0Domain": "t.eu.auth0.com",
        "RealtimeEventSourceName": "aws.partner/auth0.com/t/logs",
        "WatchedUserIds": "auth0|a,auth0|b",
    }

    def filtered(**extra: str) -> bool:
        resolver = _Resolver(template, {**base, **extra}, stack_name="tpl")
        return resolver.condition("RealtimeFiltersInPattern")

    # THEN the pattern names the watched users by default, and with DetectionsTenantWide=true
    # it takes every user's events (the tenant-wide rules need the unwatched users' too)
    assert filtered()
    assert not filtered(DetectionsTenantWide="true")
