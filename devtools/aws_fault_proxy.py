"""A proxy in front of moto's server that loses answers, for the faults moto cannot produce.

Point the function's AWS_ENDPOINT_URL at it: every request goes on to moto unchanged, except
those a rule picks, which are

- `lose`: applied by moto, then answered 503 as if the answer had been lost on the way back
  (what a load balancer says when the service took the request and then failed to reply);
- `hang`: applied by moto, then answered only after `delay_s`, or as soon as `release` is set
  (a client with a shorter read timeout sees a lost answer);
- `refuse`: answered 503 without reaching moto (the request was never applied).

Requests are told apart by their operation: the `X-Amz-Target` header of JSON protocols
(`Logs_20140328.PutLogEvents`, `DynamoDB_20120810.UpdateItem`), or `S3.<METHOD>` for S3; a rule
may also ask for a text in the request body (one item's key, say). Only the standard library is
used.
"""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import urlsplit

Action = Literal["lose", "hang", "refuse"]
_LOST = b'{"__type":"ServiceUnavailableException","message":"The service did not answer in time"}'


@dataclass
class FaultRule:
    operation: str
    action: Action
    times: int = 1
    delay_s: float = 0.0
    body_contains: bytes | None = None  # only requests whose body holds this
    path_contains: str | None = None  # only requests whose path holds this (an S3 key)
    release: threading.Event | None = None  # a hang ends when this is set, or after delay_s


class AwsFaultProxy:
    """A context manager: `with AwsFaultProxy(moto_url) as proxy: proxy.url ...`."""

    def __init__(self, upstream_url: str) -> None:
        parts = urlsplit(upstream_url)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()
        self.seen: list[str] = []  # operations, in order
        self.faults: list[tuple[str, Action]] = []
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    def add(
        self,
        operation: str,
        action: Action,
        *,
        times: int = 1,
        delay_s: float = 0.0,
        body_contains: bytes | None = None,
        path_contains: str | None = None,
        release: threading.Event | None = None,
    ) -> None:
        with self._lock:
            self._rules.append(
                FaultRule(operation, action, times, delay_s, body_contains, path_contains, release)
            )

    def clear(self) -> None:
        """Forget the rules not used up yet: every request goes through again."""
        with self._lock:
            self._rules.clear()

    def __enter__(self) -> AwsFaultProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                proxy._handle(self)

            do_PUT = do_POST = do_HEAD = do_DELETE = do_GET

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True, name="aws-fault-proxy").start()
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _take(self, operation: str, path: str, body: bytes) -> FaultRule | None:
        with self._lock:
            self.seen.append(operation)
            for rule in self._rules:
                if rule.body_contains is not None and rule.body_contains not in body:
                    continue
                if rule.path_contains is not None and rule.path_contains not in path:
                    continue
                if rule.times > 0 and rule.operation == operation:
                    rule.times -= 1
                    self.faults.append((operation, rule.action))
                    return rule
        return None

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        operation = request.headers.get("X-Amz-Target") or f"S3.{request.command}"
        rule = self._take(operation, request.path, body)
        if rule is not None and rule.action == "refuse":
            self._reply(request, 503, {"Content-Type": "application/x-amz-json-1.1"}, _LOST)
            return
        status, headers, payload = self._forward(request, body)
        if rule is None:
            self._reply(request, status, headers, payload)
        elif rule.action == "hang":
            if rule.release is not None:
                rule.release.wait(rule.delay_s)
            else:
                time.sleep(rule.delay_s)
            self._reply(request, status, headers, payload)
        else:  # lose: moto applied it; the caller hears a failure
            self._reply(request, 503, {"Content-Type": "application/x-amz-json-1.1"}, _LOST)

    def _forward(
        self, request: BaseHTTPRequestHandler, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection(*self._upstream, timeout=30)
        try:
            headers = {k: v for k, v in request.headers.items() if k.lower() != "connection"}
            connection.request(request.command, request.path, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            kept = {
                k: v
                for k, v in response.getheaders()
                if k.lower() not in ("transfer-encoding", "connection", "content-length")
            }
            return response.status, kept, payload
        finally:
            connection.close()

    @staticmethod
    def _reply(
        request: BaseHTTPRequestHandler, status: int, headers: dict[str, str], payload: bytes
    ) -> None:
        try:
            request.send_response(status)
            for name, value in headers.items():
                request.send_header(name, value)
            request.send_header("Content-Length", str(len(payload)))
            request.end_headers()
            if request.command != "HEAD":
                request.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (a `hang` longer than its read timeout)
