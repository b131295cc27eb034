"""A local AWS for tests, the demo and the benchmark: moto's server, set up from template.yaml.

moto runs as a real HTTP server (ThreadedMotoServer) and the code under test reaches it through
the standard AWS_ENDPOINT_URL variable, exactly as it would reach AWS. The resources are created
from the template's own declarations (key schema, retention, bucket settings, conditions), so
the local set-up and the deployed stack cannot drift apart.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import re
import sys
import threading
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import boto3
import yaml
from botocore.config import Config

TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "template.yaml"
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
DEFAULT_CREDENTIALS: Mapping[str, str] = {
    "client_id": "local-client-id",
    "client_secret": "local-client-secret",
}


# moto checks a condition and then writes, with no lock between the two, while its server
# answers each request on a thread of its own: two concurrent UpdateItems conditional on the same
# version can both succeed (6 in 300 tries here), which DynamoDB never allows. Conditional writes
# are what the forwarder's guarantees rest on, so the local AWS applies them one at a time, as
# the real services do. moto's state is the process's, so the lock is too.
_CONDITIONAL_WRITES = threading.Lock()


def _is_conditional_write(environ: Mapping[str, Any]) -> bool:
    target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
    if target.startswith("DynamoDB_"):
        return True  # reads too: a read must not see half of a transaction
    conditional_object = "HTTP_IF_NONE_MATCH" in environ or "HTTP_IF_MATCH" in environ
    return environ.get("REQUEST_METHOD") == "PUT" and conditional_object


def _atomic_conditional_writes(app: Any) -> Any:
    """WSGI middleware: conditional writes (and every DynamoDB call) one at a time."""

    def serve(environ: dict[str, Any], start_response: Any) -> Any:
        if not _is_conditional_write(environ):
            return app(environ, start_response)
        with _CONDITIONAL_WRITES:
            return list(app(environ, start_response))  # the whole answer, inside the lock

    return serve


def _moto_server() -> Any:
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    class AtomicMotoServer(ThreadedMotoServer):
        def _server_entry(self) -> None:
            app = _atomic_conditional_writes(DomainDispatcherApplication(create_backend_app))
            self._server = make_server(
                self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
            )
            self._server_ready_event.set()
            self._server.serve_forever()

    return AtomicMotoServer(ip_address="127.0.0.1", port=0, verbose=False)


class LocalAws:
    """moto's server on 127.0.0.1 and a free port; a context manager that stops it on exit.

    moto keeps its state in the process, not in the server: every LocalAws of one process sees
    the same resources (and reset() clears them for all). Isolate tests by names, not servers.
    """

    def __init__(self, region: str = REGION) -> None:
        self.region = region
        self._server: Any = None
        self._endpoint_url: str | None = None
        self._session: boto3.session.Session | None = None
        self._clients: dict[str, Any] = {}

    def start(self) -> LocalAws:
        # One line per request on stderr would bury test output.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        # Port 0: the OS picks a free port, so parallel test runs never collide.
        server = _moto_server()
        server.start()
        host, port = server.get_host_and_port()
        self._server = server
        self._endpoint_url = f"http://{host}:{port}"
        self._session = boto3.session.Session(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            aws_session_token="testing",
            region_name=self.region,
        )
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        self._clients.clear()

    def __enter__(self) -> LocalAws:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str:
        if self._endpoint_url is None:
            raise RuntimeError("LocalAws is not started; use it as a context manager")
        return self._endpoint_url

    def env(self) -> dict[str, str]:
        """Variables that point any boto3 client (the function's included) at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            # No instance metadata lookups: they would stall every client for seconds.
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self, service: str, region: str | None = None) -> Any:
        """A boto3 client aimed at the server, cached: clients are thread-safe and slow to build."""
        if self._session is None:
            raise RuntimeError("LocalAws is not started; use it as a context manager")
        key = f"{service}@{region or self.region}"
        if key not in self._clients:
            self._clients[key] = self._session.client(
                service,  # type: ignore[call-overload]
                endpoint_url=self.endpoint_url,
                region_name=region or self.region,
                config=Config(retries={"mode": "standard", "max_attempts": 2}),
            )
        return self._clients[key]

    def reset(self) -> None:
        """Forget every resource (moto's reset API), for tests that need a clean account."""
        url = f"{self.endpoint_url}/moto-api/reset"  # always http://127.0.0.1:<port>
        request = urllib.request.Request(url, method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            response.read()


# --- template.yaml -------------------------------------------------------------------------


class _CfnLoader(yaml.SafeLoader):  # type: ignore[misc,unused-ignore]  # typed with types-PyYAML
    """YAML loader that understands CloudFormation's short-form tags."""


def _construct_tag(tag: str) -> Callable[[_CfnLoader, yaml.Node], Any]:
    key = "Ref" if tag == "Ref" else "Condition" if tag == "Condition" else f"Fn::{tag}"

    def construct(loader: _CfnLoader, node: yaml.Node) -> Any:
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if tag == "GetAtt":
                value = str(value).split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(cast(yaml.MappingNode, node), deep=True)
        return {key: value}

    return construct


for _tag in (
    "Ref",
    "Condition",
    "Sub",
    "GetAtt",
    "If",
    "Equals",
    "Not",
    "Or",
    "And",
    "Select",
    "Split",
    "Join",
    "FindInMap",
    "Base64",
    "Cidr",
    "GetAZs",
    "ImportValue",
    "Transform",
):
    _CfnLoader.add_constructor(f"!{_tag}", _construct_tag(_tag))


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """The template as CloudFormation sees it: short tags become {"Ref": ...}/{"Fn::...": ...}."""
    with path.open(encoding="utf-8") as handle:
        loaded = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} is not a CloudFormation template")
    return loaded


class _NoValue:
    """AWS::NoValue: the property is left out."""


NO_VALUE = _NoValue()


class _Resolver:
    """Evaluates the intrinsic functions the template uses, for a local stack."""

    def __init__(
        self,
        template: Mapping[str, Any],
        parameters: Mapping[str, str],
        *,
        stack_name: str,
        refs: Mapping[str, str] | None = None,
        attributes: Mapping[tuple[str, str], str] | None = None,
    ) -> None:
        self.template = template
        self.parameters = _parameter_values(template, parameters)
        self.refs: dict[str, str] = dict(refs or {})
        self.attributes: dict[tuple[str, str], str] = dict(attributes or {})
        self.pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::StackName": stack_name,
            "AWS::URLSuffix": "amazonaws.com",
        }
        self._conditions: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            expression = self.template.get("Conditions", {})[name]
            self._conditions[name] = bool(self.resolve(expression))
        return self._conditions[name]

    def active(self, logical_id: str) -> bool:
        resource = self.template["Resources"][logical_id]
        return "Condition" not in resource or self.condition(resource["Condition"])

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.refs:
            return self.refs[name]
        raise KeyError(f"cannot resolve Ref {name!r} locally")

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [item for item in map(self.resolve, value) if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            return {
                key: resolved
                for key, item in value.items()
                if (resolved := self.resolve(item)) is not NO_VALUE
            }
        ((function, argument),) = value.items()
        if function == "Ref":
            return self.ref(argument)
        if function == "Condition":
            return self.condition(argument)
        if function == "Fn::If":
            name, if_true, if_false = argument
            return self.resolve(if_true if self.condition(name) else if_false)
        if function == "Fn::Equals":
            left, right = (self.resolve(item) for item in argument)
            return str(left) == str(right)
        if function == "Fn::Not":
            return not self.resolve(argument[0])
        if function == "Fn::Or":
            return any(self.resolve(item) for item in argument)
        if function == "Fn::And":
            return all(self.resolve(item) for item in argument)
        if function == "Fn::GetAtt":
            logical_id, attribute = argument
            return self.attributes[(logical_id, attribute)]
        if function == "Fn::Join":
            separator, items = argument
            return separator.join(str(item) for item in self.resolve(items))
        if function == "Fn::Split":
            separator, text = argument
            return str(self.resolve(text)).split(separator)
        if function == "Fn::Select":
            index, items = argument
            return self.resolve(items)[int(self.resolve(index))]
        if function == "Fn::FindInMap":
            map_name, top, second = (self.resolve(item) for item in argument)
            return self.template["Mappings"][map_name][top][second]
        if function == "Fn::Sub":
            return self._sub(argument)
        return {function: self.resolve(argument)}

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        local = {name: self.resolve(item) for name, item in variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in local:
                return str(local[name])
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return str(self.attributes[(logical_id, attribute)])
            return str(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", replace, text)


def _parameter_values(template: Mapping[str, Any], given: Mapping[str, str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, spec in template.get("Parameters", {}).items():
        if name in given:
            values[name] = given[name]
        elif "Default" in spec:
            values[name] = _cfn_string(spec["Default"])
    return values


def _cfn_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --- deploying locally ---------------------------------------------------------------------


@dataclass(frozen=True)
class DeployedResources:
    """Names of what deploy_template created (None for a destination not chosen)."""

    table_name: str
    log_group: str | None
    bucket: str | None
    secret_id: str
    queue_url: str | None
    stack_name: str = "local"
    # The Glue (Athena) database and table over the bucket, when the template declares them.
    athena_database: str | None = None
    athena_table: str | None = None
    # The watch list table, when the template declares it.
    watch_table: str | None = None
    # Multi-tenant mode: the SSM parameter the stack was given (TenantsParameterName).
    tenants_parameter: str | None = None
    # Every queue created, by logical id (FailureQueue, and TenantQueue... in multi-tenant mode).
    queue_urls: dict[str, str] = field(default_factory=dict)
    # What the real-time path delivered (created whatever the mode: a local stack may run it).
    pushed_table: str | None = None
    # The Sigma rule packs the CLI installs (rule_packs.py), when the template declares them.
    rule_packs_table: str | None = None
    # The stack's own Firehose stream (Destinations with firehose, no FirehoseStreamName).
    delivery_stream: str | None = None


def _bucket_name(stack_name: str, logical_id: str) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", f"{stack_name}-{logical_id}".lower()).strip("-")
    return name[:63].rstrip("-")


def deploy_template(
    aws: LocalAws,
    *,
    stack_name: str = "local",
    destinations: str = "cloudwatch,s3",
    auth0_credentials: Mapping[str, str] = DEFAULT_CREDENTIALS,
    template_path: Path = TEMPLATE_PATH,
    tenants_parameter: str | None = None,
) -> DeployedResources:
    """Create, on the local server, what the template declares for these destinations.

    Physical names follow the template where it names things (the forwarded log group) and are
    derived from the stack name where CloudFormation would generate them. Re-running it against
    the same server is harmless. `tenants_parameter` deploys the multi-tenant mode (the
    parameter itself is the operator's to create, as in AWS).
    """
    template = load_template(template_path)
    resources = template["Resources"]
    parameters = {"Destinations": destinations, "TenantsParameterName": tenants_parameter or ""}
    resolver = _Resolver(template, parameters, stack_name=stack_name)

    table_name = f"{stack_name}-CheckpointTable"
    _create_table(aws, table_name, resolver.resolve(resources["CheckpointTable"]["Properties"]))
    watch_table: str | None = None
    if "WatchListTable" in resources:
        watch_table = f"{stack_name}-WatchListTable"
        _create_table(aws, watch_table, resolver.resolve(resources["WatchListTable"]["Properties"]))
    rule_packs_table: str | None = None
    if "RulePacksTable" in resources:
        rule_packs_table = f"{stack_name}-RulePacksTable"
        properties = resolver.resolve(resources["RulePacksTable"]["Properties"])
        _create_table(aws, rule_packs_table, properties)
    pushed_table: str | None = None
    if "PushedEventsTable" in resources:
        pushed_table = f"{stack_name}-PushedEventsTable"
        properties = resolver.resolve(resources["PushedEventsTable"]["Properties"])
        _create_table(aws, pushed_table, properties)

    log_group: str | None = None
    if resolver.active("ForwardedLogGroup"):
        properties = resolver.resolve(resources["ForwardedLogGroup"]["Properties"])
        # CloudFormation names an unnamed group after the stack and the resource.
        log_group = str(properties.get("LogGroupName") or f"{stack_name}-ForwardedLogGroup")
        _create_log_group(aws, log_group, properties)

    bucket: str | None = None
    if resolver.active("ForwardedBucket"):
        properties = resolver.resolve(resources["ForwardedBucket"]["Properties"])
        bucket = str(properties.get("BucketName") or _bucket_name(stack_name, "ForwardedBucket"))
        _create_bucket(aws, bucket, properties)
        # ForwardedBucketPolicy is not applied: it refuses requests without TLS, moto enforces
        # bucket policies, and the local endpoint is plain HTTP. test_template checks it instead.

    athena_database: str | None = None
    athena_table: str | None = None
    if bucket is not None:
        athena_database, athena_table = _create_glue_objects(
            aws, template, destinations=destinations, stack_name=stack_name, bucket=bucket
        )

    queue_urls = _create_queues(aws, template, resolver, stack_name)

    delivery_stream: str | None = None
    if resolver.active("ForwardedDeliveryStream") and bucket is not None:
        delivery_stream = f"{stack_name}-ForwardedDeliveryStream"[:64]
        resolver.attributes[("ForwardedBucket", "Arn")] = f"arn:aws:s3:::{bucket}"
        # moto takes any role; CloudFormation would pass the stack's FirehoseDeliveryRole.
        role = f"arn:aws:iam::{ACCOUNT_ID}:role/{stack_name}-FirehoseDeliveryRole"
        resolver.attributes[("FirehoseDeliveryRole", "Arn")] = role
        properties = resolver.resolve(resources["ForwardedDeliveryStream"]["Properties"])
        _create_delivery_stream(aws, delivery_stream, properties)

    secret_id = resolver.parameters["Auth0CredentialsSecretName"]
    secrets = aws.client("secretsmanager")
    try:
        secrets.create_secret(Name=secret_id, SecretString=json.dumps(dict(auth0_credentials)))
    except secrets.exceptions.ResourceExistsException:
        secrets.put_secret_value(
            SecretId=secret_id, SecretString=json.dumps(dict(auth0_credentials))
        )

    return DeployedResources(
        table_name=table_name,
        log_group=log_group,
        bucket=bucket,
        secret_id=secret_id,
        queue_url=queue_urls.get("FailureQueue"),
        stack_name=stack_name,
        athena_database=athena_database,
        athena_table=athena_table,
        watch_table=watch_table,
        tenants_parameter=tenants_parameter,
        queue_urls=queue_urls,
        pushed_table=pushed_table,
        rule_packs_table=rule_packs_table,
        delivery_stream=delivery_stream,
    )


def _create_queues(
    aws: LocalAws, template: Mapping[str, Any], resolver: _Resolver, stack_name: str
) -> dict[str, str]:
    """Every active AWS::SQS::Queue, a queue before those whose redrive policy names it."""
    sqs = aws.client("sqs")
    pending = [
        logical_id
        for logical_id, resource in template["Resources"].items()
        if resource.get("Type") == "AWS::SQS::Queue" and resolver.active(logical_id)
    ]
    urls: dict[str, str] = {}
    while pending:
        logical_id = next(q for q in pending if _queue_ready(template, q, urls))
        pending.remove(logical_id)
        properties = resolver.resolve(template["Resources"][logical_id].get("Properties", {}))
        attributes = {
            key: json.dumps(value) if isinstance(value, dict) else _cfn_string(value)
            for key, value in properties.items()
        }
        # CloudFormation names a FIFO queue with the .fifo suffix SQS requires.
        suffix = ".fifo" if attributes.get("FifoQueue") == "true" else ""
        name = f"{stack_name}-{logical_id}{suffix}"
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        urls[logical_id] = url
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        resolver.attributes[(logical_id, "Arn")] = arn["Attributes"]["QueueArn"]
        resolver.attributes[(logical_id, "QueueName")] = name
        resolver.refs[logical_id] = url
    return urls


def _queue_ready(template: Mapping[str, Any], logical_id: str, created: Mapping[str, str]) -> bool:
    """Whether every queue this one's properties name is created already."""
    text = json.dumps(template["Resources"][logical_id].get("Properties", {}))
    return all(
        other in created or other == logical_id or f'"{other}"' not in text
        for other in template["Resources"]
        if template["Resources"][other].get("Type") == "AWS::SQS::Queue"
    )


def _create_glue_objects(
    aws: LocalAws,
    template: Mapping[str, Any],
    *,
    destinations: str,
    stack_name: str,
    bucket: str,
) -> tuple[str | None, str | None]:
    """The template's Glue database and table (at most one of each), resolved for this stack.

    The CloudFormation properties DatabaseInput and TableInput are the Glue API's own structures,
    so they are passed through as resolved. Returns (database, table), None where not declared.
    """
    glue = aws.client("glue")
    resolver = _Resolver(
        template,
        {"Destinations": destinations},
        stack_name=stack_name,
        refs={"ForwardedBucket": bucket},
        attributes={("ForwardedBucket", "Arn"): f"arn:aws:s3:::{bucket}"},
    )
    database: str | None = None
    table: str | None = None
    resources = template["Resources"]
    for logical_id, resource in resources.items():
        if resource.get("Type") == "AWS::Glue::Database" and resolver.active(logical_id):
            properties = resolver.resolve(resource["Properties"])
            # Glue stores names in lower case, as Athena requires.
            database_input = {
                **properties["DatabaseInput"],
                "Name": str(properties["DatabaseInput"]["Name"]).lower(),
            }
            database = database_input["Name"]
            resolver.refs[logical_id] = database
            with contextlib.suppress(glue.exceptions.AlreadyExistsException):
                glue.create_database(DatabaseInput=database_input)
    for logical_id, resource in resources.items():
        if resource.get("Type") == "AWS::Glue::Table" and resolver.active(logical_id):
            properties = resolver.resolve(resource["Properties"])
            table = str(properties["TableInput"]["Name"])
            with contextlib.suppress(glue.exceptions.AlreadyExistsException):
                glue.create_table(
                    DatabaseName=str(properties["DatabaseName"]).lower(),
                    TableInput=properties["TableInput"],
                )
    return database, table


def _create_table(aws: LocalAws, table_name: str, properties: Mapping[str, Any]) -> None:
    dynamodb = aws.client("dynamodb")
    arguments: dict[str, Any] = {
        "TableName": table_name,
        "KeySchema": properties["KeySchema"],
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "BillingMode": properties.get("BillingMode", "PROVISIONED"),
    }
    for optional in ("GlobalSecondaryIndexes", "ProvisionedThroughput"):
        if optional in properties:
            arguments[optional] = properties[optional]
    if "SSESpecification" in properties:
        # CloudFormation spells the flag SSEEnabled; the API calls it Enabled.
        sse = dict(properties["SSESpecification"])
        arguments["SSESpecification"] = {"Enabled": bool(sse.pop("SSEEnabled", False)), **sse}
    try:
        dynamodb.create_table(**arguments)
    except dynamodb.exceptions.ResourceInUseException:
        return
    dynamodb.get_waiter("table_exists").wait(
        TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )
    pitr = properties.get("PointInTimeRecoverySpecification")
    if pitr:
        dynamodb.update_continuous_backups(
            TableName=table_name, PointInTimeRecoverySpecification=pitr
        )
    ttl = properties.get("TimeToLiveSpecification")
    if ttl:
        dynamodb.update_time_to_live(TableName=table_name, TimeToLiveSpecification=ttl)


def _create_delivery_stream(aws: LocalAws, name: str, properties: Mapping[str, Any]) -> None:
    """A Firehose stream as the template declares it (moto's delivers to its S3 at once)."""
    firehose = aws.client("firehose")
    with contextlib.suppress(firehose.exceptions.ResourceInUseException):
        firehose.create_delivery_stream(DeliveryStreamName=name, **properties)


def _create_log_group(aws: LocalAws, name: str, properties: Mapping[str, Any]) -> None:
    logs = aws.client("logs")
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_group(logGroupName=name)
    if "RetentionInDays" in properties:
        logs.put_retention_policy(
            logGroupName=name, retentionInDays=int(properties["RetentionInDays"])
        )


def _create_bucket(aws: LocalAws, bucket: str, properties: Mapping[str, Any]) -> None:
    s3 = aws.client("s3")
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=bucket)
    if "VersioningConfiguration" in properties:
        s3.put_bucket_versioning(
            Bucket=bucket,
            VersioningConfiguration={"Status": properties["VersioningConfiguration"]["Status"]},
        )
    if "PublicAccessBlockConfiguration" in properties:
        block = {
            key: bool(value) for key, value in properties["PublicAccessBlockConfiguration"].items()
        }
        s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=block)
    if "OwnershipControls" in properties:
        s3.put_bucket_ownership_controls(
            Bucket=bucket, OwnershipControls=properties["OwnershipControls"]
        )
    if "BucketEncryption" in properties:
        # CloudFormation's rules list, with its own spelling, is the API's {"Rules": [...]}.
        rules = [
            {
                "ApplyServerSideEncryptionByDefault"
                if key == "ServerSideEncryptionByDefault"
                else key: value
                for key, value in rule.items()
            }
            for rule in properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        ]
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": rules})


FORWARDER = "ForwarderFunction"
WORKER = "TenantWorkerFunction"


def _function_properties(
    template: Mapping[str, Any], function: str = FORWARDER
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Globals.Function, the function's Properties)."""
    functions = [
        logical_id
        for logical_id, resource in template["Resources"].items()
        if resource.get("Type") == "AWS::Serverless::Function"
    ]
    if function not in functions:
        raise ValueError(f"no function {function!r}; the template has {functions}")
    return (
        dict(template.get("Globals", {}).get("Function", {})),
        dict(template["Resources"][function]["Properties"]),
    )


def function_environment(
    resources: DeployedResources,
    *,
    auth0_domain: str,
    auth0_base_url: str,
    watched_user_ids: Sequence[str] | None,
    destinations: str,
    # `Path | str` so that callers may pass **dict[str, str] overrides (variable names are upper
    # case and never collide with this keyword). The same for `function`, a logical id.
    template_path: Path | str = TEMPLATE_PATH,
    function: str = FORWARDER,
    **overrides: str,
) -> dict[str, str]:
    """The function's environment as the template declares it, for the locally deployed stack.

    Globals first, then the function's own variables (as SAM merges them); variables that resolve
    to AWS::NoValue are left out; then AUTH0_BASE_URL (where the function declares it) and the
    overrides.
    """
    template = load_template(Path(template_path))
    refs = {"CheckpointTable": resources.table_name, **resources.queue_urls}
    # Empty (unset) for resources recorded before the template had a watch list table.
    refs["WatchListTable"] = resources.watch_table or ""
    refs["RulePacksTable"] = resources.rule_packs_table or ""
    refs["PushedEventsTable"] = resources.pushed_table or ""
    # The real-time queue is created by devtools/realtime_stack.py, which sets its URL itself.
    refs.setdefault("RealtimeQueue", "")
    if resources.log_group is not None:
        refs["ForwardedLogGroup"] = resources.log_group
    if resources.bucket is not None:
        refs["ForwardedBucket"] = resources.bucket
    if resources.delivery_stream is not None:
        refs["ForwardedDeliveryStream"] = resources.delivery_stream
    if resources.queue_url is not None:
        refs["FailureQueue"] = resources.queue_url
    parameters = {
        "Auth0Domain": auth0_domain,
        "Auth0CredentialsSecretName": resources.secret_id,
        "WatchedUserIds": ",".join(watched_user_ids or ()),
        "Destinations": destinations,
        "TenantsParameterName": resources.tenants_parameter or "",
    }
    resolver = _Resolver(template, parameters, stack_name=resources.stack_name, refs=refs)
    global_properties, function_properties = _function_properties(template, function)
    declared = {
        **global_properties.get("Environment", {}).get("Variables", {}),
        **function_properties.get("Environment", {}).get("Variables", {}),
    }
    environment: dict[str, str] = {}
    for name, value in declared.items():
        resolved = resolver.resolve(value)
        if resolved is not NO_VALUE:
            environment[name] = _cfn_string(resolved)
    if "AUTH0_BASE_URL" in declared:
        environment["AUTH0_BASE_URL"] = auth0_base_url
    environment.update(overrides)
    return environment


def handler_from_template(
    template_path: Path = TEMPLATE_PATH,
    *,
    function: str = FORWARDER,
    parameters: Mapping[str, str] | None = None,
) -> Callable[[dict[str, Any], Any], Any]:
    """Import the handler the template names (for these parameters: it may depend on them), from
    the CodeUri it names, as Lambda would."""
    template = load_template(template_path)
    global_properties, function_properties = _function_properties(template, function)
    resolver = _Resolver(template, parameters or {}, stack_name="local")
    merged = {**global_properties, **function_properties}
    properties = {name: resolver.resolve(merged[name]) for name in ("CodeUri", "Handler")}
    code_dir = (template_path.parent / str(properties["CodeUri"])).resolve()
    module_name, _, function_name = str(properties["Handler"]).rpartition(".")
    if str(code_dir) not in sys.path:
        sys.path.insert(0, str(code_dir))
    module = importlib.import_module(module_name)
    handler: Callable[[dict[str, Any], Any], Any] = getattr(module, function_name)
    return handler
