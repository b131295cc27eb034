"""devtools/sam_local/check.py reads what `sam local invoke` prints; these pin that parsing on a
captured output, so `make test-sam-local` cannot pass by reading nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.sam_local.check import REPORT_LINE, Invocation, parse_summary, sam_environment

# Shaped like a real `sam local invoke` run (SAM CLI's messages and the container's log on
# stderr, the handler's return value on stdout).
STDERR = """\
Invoking log_forwarder.app.lambda_handler (python3.12)
Mounting /repo/.aws-sam/build/ForwarderFunction as /var/task:ro,delegated, inside runtime container
{"timestamp": "2026-11-27T06:50:14Z", "level": "INFO", "message": "HTTP Request: POST http://host.docker.internal:8080/oauth/token \\"HTTP/1.1 200 OK\\"", "logger": "httpx"}
{"level":"INFO","location":"lambda_handler:135","message":"Run finished","service":"auth0-user-log-forwarder","summary":{"forwarded":28}}
{"_aws":{"Timestamp":1795762216964,"CloudWatchMetrics":[]},"service":"auth0-user-log-forwarder","ColdStart":[1.0]}
END RequestId: 44afe06d-05ca-4a13-a366-72daa8fb09da
REPORT RequestId: 44afe06d-05ca-4a13-a366-72daa8fb09da\tInit Duration: 0.04 ms\tDuration: 2749.28 ms\tBilled Duration: 2750 ms\tMemory Size: 512 MB\tMax Memory Used: 512 MB\t
"""
STDOUT = '{"users": [], "forwarded": 28, "api_calls": 3}\n'


def test_the_summary_report_line_and_log_lines_are_read() -> None:
    invocation = Invocation("t", 28, 1.0, 0, STDOUT, STDERR)
    assert parse_summary(STDOUT) == {"users": [], "forwarded": 28, "api_calls": 3}
    (report,) = REPORT_LINE.findall(STDERR)
    assert report.startswith("REPORT RequestId: 44afe06d")
    assert "Billed Duration: 2750 ms" in report
    assert len(invocation.function_log_lines()) == 3


def test_an_error_result_or_no_output_is_not_a_summary() -> None:
    assert parse_summary("") is None
    assert parse_summary("not json\n") is None
    error = '{"errorMessage": "boom", "errorType": "ConfigError"}'
    assert parse_summary(error) == {"errorMessage": "boom", "errorType": "ConfigError"}


def test_sam_cli_gets_dummy_credentials_and_no_host_aws_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_PROFILE", "production")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAREALKEY")
    env = sam_environment("/opt/python3.12/bin/python3.12", tmp_path / "samcli")
    assert "AWS_PROFILE" not in env
    assert env["AWS_ACCESS_KEY_ID"] == "testing"
    assert env["AWS_SHARED_CREDENTIALS_FILE"].startswith(str(tmp_path))
    assert env["SAM_CLI_TELEMETRY"] == "0"
    assert env["PATH"].startswith("/opt/python3.12/bin")
    assert (tmp_path / "samcli" / "metadata.json").exists()
