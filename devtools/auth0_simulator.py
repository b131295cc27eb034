"""A local Auth0 Management API that serves log events, for tests, the demo and the benchmark.

It behaves like the parts of Auth0 this project depends on, as Auth0 documents them, including the
unpleasant parts: the 1,000-result search cap, a global token-bucket rate limit, tokens that expire
or are revoked, scopes, events that become visible late, events that expire, gateway errors with
HTML bodies, and log ids that follow ingestion rather than event date. Beyond what Auth0 does, it
can answer megabytes where kilobytes are due (`oversize_next`, `inflate`), streamed without ever
being held in memory, and says how much of each it sent before the client hung up; it can answer
with a compression bomb (`bomb_next`: a few hundred KB that decode to 100 MB, or a chain of
encodings) and drip an answer a byte at a time (`drip_next`).

Only the standard library is used, and nothing outside this file is read at run time, so the demo
runs from a bare clone. The clock is injectable: tests move time forward instead of sleeping.

Usage::

    with Auth0Simulator(clock=fake_clock) as sim:
        sim.add_events(events)
        httpx.get(f"{sim.base_url}/api/v2/users/{quote(uid, safe='')}/logs", ...)
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import math
import random
import re
import secrets
import socket
import sys
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import parse_qs, unquote, urlencode

__all__ = [
    "Auth0Simulator",
    "QueryError",
    "RateLimit",
    "SimulatorStats",
    "StreamedAnswer",
    "parse_log_query",
]

SEARCH_CAP: Final = 1000
MAX_PER_PAGE: Final = 100
# Auth0 answers a default-size page when per_page is not sent ("paging is disabled").
DEFAULT_PAGE_SIZE: Final = 50
DEFAULT_TAKE: Final = 50
MAX_QUERY_CHARS: Final = 2000

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_USER_LOGS_PATH: Final = re.compile(r"/api/v2/users/([^/]+)/logs")
_LOG_PATH: Final = re.compile(r"/api/v2/logs/([^/]+)")
_USER_PATH: Final = re.compile(r"/api/v2/users/([^/]+)")
_SORT_PARAM: Final = re.compile(r"([A-Za-z_$][\w.$-]*):(-1|1)")
_INTEGER: Final = re.compile(r"-?\d+")
_PARAM_HELP: Final = {
    "page": "Page index of the results to return. First page is 0.",
    "per_page": "Number of results per page. Paging is disabled if parameter not sent.",
    "sort": "Field to sort by. Use field:order where order is 1 for ascending and -1 for "
    "descending. Defaults to date:-1.",
    "include_totals": "Return results inside an object that contains the total result count "
    "(true) or as a direct array of results (false, default).",
    "include_fields": "Whether specified fields are to be included (true) or excluded (false).",
    "take": "Number of entries to retrieve when using the from parameter.",
}
_GATEWAY_HTML: Final = (
    "<html>\r\n<head><title>{code} {phrase}</title></head>\r\n<body>\r\n"
    "<center><h1>{code} {phrase}</h1></center>\r\n</body>\r\n</html>\r\n"
)

JsonDict = dict[str, Any]


@dataclass(frozen=True)
class RateLimit:
    """Auth0's global Management API limit as a token bucket (Enterprise numbers by default)."""

    burst: int = 50  # bucket capacity, reported as x-ratelimit-limit
    per_second: float = 16.0  # refill rate

    def __post_init__(self) -> None:
        if self.burst < 1 or not self.per_second > 0:
            raise ValueError("RateLimit needs burst >= 1 and per_second > 0")


# -- errors -----------------------------------------------------------------------------------


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:  # fault injection may ask for any number
        return "Error"


class _ApiError(Exception):
    """An error answer with Auth0's four-key body."""

    def __init__(self, status: int, message: str, error_code: str) -> None:
        super().__init__(message)
        self.status = status
        self.body: JsonDict = {
            "statusCode": status,
            "error": _phrase(status),
            "message": message,
            "errorCode": error_code,
        }


def _query_validation(param: str, problem: str) -> _ApiError:
    # The wording of Auth0's schema validator, so clients that log the message see the real thing.
    return _ApiError(
        400,
        f"Query validation error: '{problem}' on property {param} ({_PARAM_HELP.get(param, '')}).",
        "invalid_query_string",
    )


def _cap_error(page: int) -> _ApiError:
    return _ApiError(
        400,
        f"Requesting page {page} exceeds the allowed maximum of {SEARCH_CAP} records: "
        "please consider searching by checkpoint",
        "invalid_paging",
    )


_RATE_LIMITED_BODY: Final[JsonDict] = {
    "statusCode": 429,
    "error": "Too Many Requests",
    "message": "Global limit has been reached",
    "errorCode": "too_many_requests",
}


# -- the stored event -------------------------------------------------------------------------


def _instant_us(text: str) -> int:
    """Microseconds since the epoch of an ISO-8601 instant; naive means UTC."""
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return (parsed - _EPOCH) // timedelta(microseconds=1)


@dataclass(slots=True)
class _Stored:
    seq: int  # insertion order: the deterministic tie-breaker for equal sort keys
    event: JsonDict
    date_us: int
    visible_at: float | None

    @property
    def user_id(self) -> str | None:
        value = self.event.get("user_id") if isinstance(self.event, dict) else None
        return value if isinstance(value, str) else None

    @property
    def log_id(self) -> str:
        value = self.event.get("log_id") if isinstance(self.event, dict) else None
        return value if isinstance(value, str) else ""


def _lookup(event: Mapping[str, Any], dotted: str) -> Any:
    value: Any = event
    for part in dotted.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _value_key(value: Any) -> tuple[int, Any]:
    # A total order over mixed JSON values, so sorting on any field never raises.
    if value is None:
        return (0, "")
    if isinstance(value, bool):
        return (1, int(value))
    if isinstance(value, int | float):
        return (2, float(value))
    if isinstance(value, str):
        return (3, value)
    return (4, json.dumps(value, sort_keys=True))


def _sorted(items: Iterable[_Stored], sort_field: str, descending: bool) -> list[_Stored]:
    def by_date(stored: _Stored) -> tuple[Any, ...]:
        return (stored.date_us, stored.seq)

    def by_field(stored: _Stored) -> tuple[Any, ...]:
        return (_value_key(_lookup(stored.event, sort_field)), stored.seq)

    ordered = sorted(items, key=by_date if sort_field == "date" else by_field)
    # Descending is the exact reverse of ascending, so equal dates come out in one fixed order
    # and page boundaries never skip or repeat an event.
    if descending:
        ordered.reverse()
    return ordered


# -- the log search query language (a Lucene subset) -------------------------------------------


class QueryError(ValueError):
    """A `q` the simulator cannot parse; the API answers 400."""


@dataclass(frozen=True, slots=True)
class _Term:
    field: str
    value: str | None  # None: `field:*`, the field is present

    def matches(self, stored: _Stored) -> bool:
        actual = _lookup(stored.event, self.field)
        if self.value is None:
            return actual is not None and actual != ""
        if self.field == "date" and isinstance(actual, str):
            try:
                return _instant_us(actual) == _instant_us(self.value)
            except ValueError:
                pass
        if isinstance(actual, str):
            return actual == self.value
        return actual is not None and json.dumps(actual) == self.value


@dataclass(frozen=True, slots=True)
class _Range:
    field: str
    low: str | None  # None: open end (`*`)
    high: str | None
    low_inclusive: bool
    high_inclusive: bool

    def matches(self, stored: _Stored) -> bool:
        actual: Any
        low: Any = self.low
        high: Any = self.high
        if self.field == "date":
            actual = stored.date_us
            low = None if self.low is None else _instant_us(self.low)
            high = None if self.high is None else _instant_us(self.high)
        else:
            actual = _lookup(stored.event, self.field)
            if not isinstance(actual, str):
                return False
        if low is not None and (actual < low or (actual == low and not self.low_inclusive)):
            return False
        return high is None or actual < high or (actual == high and self.high_inclusive)


@dataclass(frozen=True, slots=True)
class _Not:
    item: _Node

    def matches(self, stored: _Stored) -> bool:
        return not self.item.matches(stored)


@dataclass(frozen=True, slots=True)
class _All:
    items: tuple[_Node, ...]

    def matches(self, stored: _Stored) -> bool:
        return all(item.matches(stored) for item in self.items)


@dataclass(frozen=True, slots=True)
class _Any:
    items: tuple[_Node, ...]

    def matches(self, stored: _Stored) -> bool:
        return any(item.matches(stored) for item in self.items)


_Node = _Term | _Range | _Not | _All | _Any

_FIELD: Final = re.compile(r"[A-Za-z_$][\w.$-]*")
_OPERATORS: Final = {"AND": "AND", "&&": "AND", "OR": "OR", "||": "OR", "NOT": "NOT", "!": "NOT"}


class _QueryParser:
    """Recursive descent over: or := and (OR and)*; and := unary (AND unary)*;
    unary := NOT unary | '(' or ')' | field ':' value.

    Terms must be joined by an explicit operator: Auth0 does not document its default operator,
    so a query that relies on one is rejected here rather than silently meaning something.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def parse(self) -> _Node | None:
        self._skip_space()
        if self.pos == len(self.text):
            return None
        node = self._or()
        self._skip_space()
        if self.pos != len(self.text):
            raise QueryError(f"unexpected {self.text[self.pos :][:20]!r} at offset {self.pos}")
        return node

    def _or(self) -> _Node:
        items = [self._and()]
        while self._operator("OR"):
            items.append(self._and())
        return items[0] if len(items) == 1 else _Any(tuple(items))

    def _and(self) -> _Node:
        items = [self._unary()]
        while self._operator("AND"):
            items.append(self._unary())
        return items[0] if len(items) == 1 else _All(tuple(items))

    def _unary(self) -> _Node:
        if self._operator("NOT"):
            return _Not(self._unary())
        self._skip_space()
        if self._peek() == "(":
            self.pos += 1
            node = self._or()
            self._skip_space()
            self._expect(")")
            return node
        return self._term()

    def _term(self) -> _Node:
        match = _FIELD.match(self.text, self.pos)
        if match is None or self.text[match.end() : match.end() + 1] != ":":
            raise QueryError(f"expected field:value at offset {self.pos}")
        name = match.group()
        if name in _OPERATORS:
            raise QueryError(f"operator {name} where a term was expected")
        self.pos = match.end() + 1
        opener = self._peek()
        if opener in ("[", "{"):
            return self._range(name)
        if opener == '"':
            return _Term(name, self._quoted())
        value = self._bare()
        return _Term(name, None if value == "*" else value)

    def _range(self, name: str) -> _Range:
        low_inclusive = self.text[self.pos] == "["
        self.pos += 1
        self._skip_space()
        low = self._bound()
        self._skip_space()
        if not self.text.startswith("TO", self.pos):
            raise QueryError(f"expected TO in the range at offset {self.pos}")
        self.pos += 2
        self._skip_space()
        high = self._bound()
        self._skip_space()
        closer = self._peek()
        if closer not in ("]", "}"):
            raise QueryError(f"unclosed range at offset {self.pos}")
        self.pos += 1
        if name == "date":
            for bound in (low, high):
                if bound is not None:
                    try:
                        _instant_us(bound)
                    except ValueError as exc:
                        raise QueryError(f"not an ISO-8601 date: {bound!r}") from exc
        return _Range(name, low, high, low_inclusive, closer == "]")

    def _bound(self) -> str | None:
        if self._peek() == '"':
            return self._quoted()
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in " \t\r\n]}":
            self.pos += 1
        value = self.text[start : self.pos]
        if not value:
            raise QueryError(f"empty range bound at offset {start}")
        return None if value == "*" else value

    def _quoted(self) -> str:
        self.pos += 1  # the opening quote
        out: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\\" and self.pos + 1 < len(self.text):
                out.append(self.text[self.pos + 1])
                self.pos += 2
            elif char == '"':
                self.pos += 1
                return "".join(out)
            else:
                out.append(char)
                self.pos += 1
        raise QueryError("unterminated quoted value")

    def _bare(self) -> str:
        out: list[str] = []
        while self.pos < len(self.text) and self.text[self.pos] not in ' \t\r\n()"':
            char = self.text[self.pos]
            if char == "\\" and self.pos + 1 < len(self.text):
                out.append(self.text[self.pos + 1])
                self.pos += 2
            else:
                out.append(char)
                self.pos += 1
        if not out:
            raise QueryError(f"missing value at offset {self.pos}")
        return "".join(out)

    def _operator(self, wanted: str) -> bool:
        self._skip_space()
        for spelling, meaning in _OPERATORS.items():
            if meaning != wanted or not self.text.startswith(spelling, self.pos):
                continue
            end = self.pos + len(spelling)
            # A word operator must stand alone: `ORDER:x` is a term, not OR.
            if spelling.isalpha() and end < len(self.text) and self.text[end] not in " \t\r\n(":
                continue
            self.pos = end
            return True
        return False

    def _expect(self, char: str) -> None:
        if self._peek() != char:
            raise QueryError(f"expected {char!r} at offset {self.pos}")
        self.pos += 1

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t\r\n":
            self.pos += 1


def parse_log_query(text: str) -> _Node | None:
    """Parse a log search `q`; None means "match everything". Raises QueryError."""
    return _QueryParser(text).parse()


def _user_ids_in(node: _Node | None) -> set[str]:
    if isinstance(node, _Term):
        return {node.value} if node.field == "user_id" and node.value is not None else set()
    if isinstance(node, _Not):
        return _user_ids_in(node.item)
    found: set[str] = set()
    if isinstance(node, _All | _Any):
        for item in node.items:
            found |= _user_ids_in(item)
    return found


# -- statistics -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamedAnswer:
    """An oversized answer as the simulator wrote it: its request target, its length, and the
    bytes the socket took before the client hung up (all of them if it read to the end). What
    the socket took includes what sat in its buffers, unread: an upper bound on what was read."""

    target: str
    size: int
    sent: int


class SimulatorStats:
    """Thread-safe counters of what the simulator answered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, int]] = Counter()
        self._calls: Counter[tuple[str, str | None]] = Counter()
        self._streamed: list[StreamedAnswer] = []

    @property
    def requests(self) -> Counter[tuple[str, int]]:
        """(endpoint, status) -> count; endpoint is "token", "user_logs" or "logs". A copy."""
        with self._lock:
            return Counter(self._requests)

    def calls(self, endpoint: str | None = None, user_id: str | None = None) -> int:
        """API calls (token requests excluded), optionally for one endpoint and/or one user: the
        user of a /users/{id}/logs path, or a user_id named in a /logs `q`."""
        with self._lock:
            if user_id is None:
                return sum(
                    n
                    for (name, _), n in self._requests.items()
                    if name != "token" and endpoint in (None, name)
                )
            return sum(
                n
                for (name, uid), n in self._calls.items()
                if uid == user_id and endpoint in (None, name)
            )

    @property
    def rate_limited(self) -> int:
        with self._lock:
            return sum(n for (_, status), n in self._requests.items() if status == 429)

    @property
    def streamed(self) -> list[StreamedAnswer]:
        """The oversized answers written so far (`oversize_next`, `inflate`), oldest first."""
        with self._lock:
            return list(self._streamed)

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._calls.clear()
            self._streamed.clear()

    def _record_streamed(self, answer: StreamedAnswer) -> None:
        with self._lock:
            self._streamed.append(answer)

    def _record(self, endpoint: str, status: int, user_ids: Iterable[str]) -> None:
        with self._lock:
            self._requests[(endpoint, status)] += 1
            for uid in user_ids:
                self._calls[(endpoint, uid)] += 1


# -- the simulator ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Token:
    expires_at: float
    scopes: frozenset[str]


@dataclass(slots=True)
class _FaultRule:
    remaining: int
    status: int
    html: bool
    path_contains: str | None
    message: str | None = None


@dataclass(slots=True)
class _OversizeRule:
    remaining: int
    size: int
    path_contains: str | None


@dataclass(slots=True)
class _BombRule:
    remaining: int
    path_contains: str | None
    status: int
    encoding: str
    megabytes: int
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _DripRule:
    remaining: int
    path_contains: str | None
    interval_s: float


_AnyRule = _OversizeRule | _BombRule | _DripRule


@dataclass(slots=True)
class _Response:
    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    # A streamed body instead: bytes as they are, and runs of that many padding bytes, written
    # a chunk at a time so that no answer of any size is ever held whole.
    parts: tuple[bytes | int, ...] | None = None
    # Written one byte at a time, this long apart (a server dripping its answer).
    drip_s: float | None = None

    @property
    def length(self) -> int:
        if self.parts is None:
            return len(self.body)
        return sum(part if isinstance(part, int) else len(part) for part in self.parts)


# Inside a streamed answer, the value that marks where an inflated event's padding goes.
_PADDING_MARK: Final = "\u0000padding\u0000"
_PAD_CHUNK: Final = b"x" * 65536


def _streamed_json(
    status: int, payload: Any, padding: Mapping[str, int], headers: Mapping[str, str]
) -> _Response:
    """`payload` as JSON, each event whose log_id `padding` names carrying that many bytes more
    (a top-level `padding` string: an unknown field, as Auth0 allows), streamed. A string that
    is _PADDING_MARK + a key of `padding` is replaced the same way wherever it is."""

    def padded(entry: Any) -> Any:
        if isinstance(entry, dict) and entry.get("log_id") in padding:
            return {**entry, "padding": _PADDING_MARK + str(entry["log_id"])}
        return entry

    if isinstance(payload, list):
        payload = [padded(entry) for entry in payload]
    elif isinstance(payload, dict) and isinstance(payload.get("logs"), list):
        payload = {**payload, "logs": [padded(entry) for entry in payload["logs"]]}
    else:
        payload = padded(payload)
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    parts: list[bytes | int] = []
    pattern = re.compile(re.escape(json.dumps(_PADDING_MARK)[1:-1]) + r"([^\"]*)")
    at = 0
    for match in pattern.finditer(text):
        parts += [text[at : match.start()].encode(), padding[match.group(1)]]
        at = match.end()
    parts.append(text[at:].encode())
    return _Response(status, b"", headers=dict(headers), parts=tuple(parts))


@functools.cache
def _bomb_body(encoding: str, megabytes: int) -> bytes:
    """A JSON array of one event whose `padding` is `megabytes` MB of zeros, compressed with
    each coding of `encoding` in turn ("gzip, gzip": gzip twice); made once per shape."""
    layers = [coding.strip() for coding in encoding.split(",")]
    head = b'[{"date":"2026-01-01T00:00:00.000Z","type":"sapi","log_id":"' + b"9" * 56
    compressor = zlib.compressobj(9, zlib.DEFLATED, _WBITS[layers[0]])
    body = [compressor.compress(head + b'","padding":"')]
    zeros = b"0" * 2**20
    body += [compressor.compress(zeros) for _ in range(megabytes)]
    body += [compressor.compress(b'"}]'), compressor.flush()]
    data = b"".join(body)
    for coding in layers[1:]:
        outer = zlib.compressobj(9, zlib.DEFLATED, _WBITS[coding])
        data = outer.compress(data) + outer.flush()
    return data


_WBITS: Final = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def _json_response(
    status: int, payload: Any, headers: Mapping[str, str] | None = None
) -> _Response:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return _Response(status, body, headers=dict(headers or {}))


def _html_response(status: int) -> _Response:
    phrase = _phrase(status)
    body = _GATEWAY_HTML.format(code=status, phrase=phrase).encode()
    return _Response(status, body, content_type="text/html")


class Auth0Simulator:
    """An in-process HTTP server speaking the Auth0 token and log endpoints."""

    def __init__(
        self,
        *,
        domain: str = "demo-tenant.auth0.local",
        client_id: str = "sim-client-id",
        client_secret: str = "sim-client-secret",  # noqa: S107 - a simulator, not a secret
        clock: Callable[[], float] = time.time,
        rate_limit: RateLimit | None = RateLimit(),
        latency_s: float = 0.0,
        retention_s: float | None = None,
        token_ttl_s: int = 86400,
        scopes: Sequence[str] = ("read:logs", "read:logs_users"),
        seed: int = 0,
    ) -> None:
        self.domain = domain
        self.client_id = client_id
        self.client_secret = client_secret
        self.clock = clock
        self.token_ttl_s = token_ttl_s
        # Read on every request, so tests can change them between calls.
        self.latency_s = latency_s
        self.retention_s = retention_s
        # What an unknown user id gets is undocumented (an empty list or a 404): both are
        # available so clients can be tested against both.
        self.unknown_user_status = 200
        # Under log search v3, include_totals' `total` may count only the page.
        self.totals_page_only = False
        # Auth0 documents `from` as "newer than a given log_id"; what it answers for an id it
        # does not hold is not documented. None: the documented reading (a bound); a status
        # (400, 404): refuse such a `from`, so clients can be tested against both.
        self.unknown_from_status: int | None = None
        self.stats = SimulatorStats()
        self.base_url = ""

        self._lock = threading.RLock()
        self._scopes = frozenset(scopes)
        self._tokens: dict[str, _Token] = {}
        self._events: list[_Stored] = []
        self._by_user: dict[str, list[_Stored]] = {}
        self._known_users: set[str] = set()
        self._deleted_users: set[str] = set()
        self._seq = 0
        self._last_ingest = -math.inf
        self._id_rng = random.Random(seed)
        self._fault_rng = random.Random(f"{seed}:faults")
        self._fault_rules: list[_FaultRule] = []
        self._oversize_rules: list[_OversizeRule] = []
        self._inflated: dict[str, int] = {}
        self._hostile_rules: list[_BombRule | _DripRule] = []
        self._random_fault_p = 0.0
        self._random_fault_statuses: tuple[int, ...] = (500, 502, 503)
        self._rate_limit = rate_limit
        self._bucket = float(rate_limit.burst) if rate_limit else 0.0
        self._bucket_at: float | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on `host`:`port` (port 0: a free one) and return the base URL.

        The defaults keep the simulator on this machine's loopback. A container reaches it only
        if it listens on an address the container can route to (the Docker bridge's, or all).
        """
        if self._server is not None:
            return self.base_url
        server = _Server((host, port), _Handler)
        server.simulator = self
        self._server = server
        self._thread = threading.Thread(
            # A short poll interval keeps stop() quick (it waits for the loop to notice).
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="auth0-simulator",
            daemon=True,
        )
        self._thread.start()
        # A wildcard address is not one a client can connect to: name the loopback instead.
        reachable = "127.0.0.1" if host in ("", "0.0.0.0") else host
        self.base_url = f"http://{reachable}:{server.server_address[1]}"
        return self.base_url

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Auth0Simulator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- test controls ------------------------------------------------------------------------

    @property
    def rate_limit(self) -> RateLimit | None:
        return self._rate_limit

    @rate_limit.setter
    def rate_limit(self, value: RateLimit | None) -> None:
        with self._lock:
            # A new policy starts with a full bucket.
            self._rate_limit = value
            self._bucket = float(value.burst) if value else 0.0
            self._bucket_at = None

    def add_event(
        self, event: Mapping[str, Any], *, visible_at: float | None = None
    ) -> dict[str, Any]:
        """Store one event and return a copy of it as stored (with its log_id).

        `date` is required (ISO-8601). `user_id` is optional, as on real tenant events; events
        without one are only reachable through /api/v2/logs. A given `log_id` is kept as is, even
        if repeated. Otherwise one is assigned that reflects ingestion, like Auth0's: ids grow
        in insertion order, and an event hidden until `visible_at` is ingested at that time, so
        it gets an id above every event that became visible before it. That is what lets
        checkpoint paging (ordered by log_id) pick up late events.
        """
        date = event.get("date")
        if not isinstance(date, str):
            raise ValueError("an event needs an ISO-8601 'date' string")
        try:
            date_us = _instant_us(date)
        except ValueError as exc:
            raise ValueError(f"event date is not ISO-8601: {date!r}") from exc
        user_id = event.get("user_id")
        if user_id is not None and not isinstance(user_id, str):
            raise ValueError("'user_id' must be a string")
        log_id = event.get("log_id")
        if log_id is not None and not isinstance(log_id, str):
            raise ValueError("'log_id' must be a string")
        stored_event = copy.deepcopy(dict(event))
        with self._lock:
            now = self.clock()
            if log_id is None:
                stored_event["log_id"] = self._new_log_id(now, visible_at)
            self._seq += 1
            stored = _Stored(self._seq, stored_event, date_us, visible_at)
            self._events.append(stored)
            if isinstance(user_id, str):
                self._by_user.setdefault(user_id, []).append(stored)
                self._known_users.add(user_id)
            return copy.deepcopy(stored_event)

    def add_events(
        self, events: Iterable[Mapping[str, Any]], *, visible_at: float | None = None
    ) -> list[dict[str, Any]]:
        return [self.add_event(event, visible_at=visible_at) for event in events]

    def add_user(self, user_id: str) -> None:
        """Make a user known without events (matters when unknown_user_status is 404)."""
        with self._lock:
            self._known_users.add(user_id)

    def add_raw_entry(self, user_id: str, entry: Any, *, sorts_as: str) -> None:
        """An entry the user's own endpoint returns as is, however malformed (no date, no
        log_id, null...), placed in date order as if dated `sorts_as` (ISO-8601)."""
        with self._lock:
            self._seq += 1
            stored = _Stored(self._seq, copy.deepcopy(entry), _instant_us(sorts_as), None)
            self._by_user.setdefault(user_id, []).append(stored)
            self._known_users.add(user_id)

    def delete_user(self, user_id: str) -> None:
        """Delete a user as Auth0 does: its own endpoint answers 404 "The user does not exist.",
        while its events (the deletion among them) stay in the tenant log until they expire."""
        with self._lock:
            self._deleted_users.add(user_id)
            self._known_users.discard(user_id)

    def revoke_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    def set_scopes(self, scopes: Sequence[str]) -> None:
        with self._lock:
            self._scopes = frozenset(scopes)

    def fail_next(
        self,
        count: int,
        *,
        status: int = 503,
        html: bool = True,
        path_contains: str | None = None,
        message: str | None = None,
    ) -> None:
        """The next `count` API requests answer `status`: with a gateway's HTML page (and no
        rate-limit headers) if `html`, else with Auth0's JSON body, whose `message` is the
        status's phrase or `message` (text a client must print safely).

        `path_contains` narrows this to requests whose raw target (path and query, still
        percent-encoded) contains it; only then can the token endpoint be hit.
        """
        with self._lock:
            self._fault_rules.append(_FaultRule(count, status, html, path_contains, message))

    def fail_randomly(
        self, probability: float, *, statuses: Sequence[int] = (500, 502, 503)
    ) -> None:
        """Each API request fails with this probability (seeded): 500 as Auth0 JSON, other
        statuses as a gateway HTML page. 0 turns it off."""
        with self._lock:
            self._random_fault_p = probability
            self._random_fault_statuses = tuple(statuses)

    def oversize_next(
        self, count: int, *, megabytes: float, path_contains: str | None = None
    ) -> None:
        """The next `count` log API requests (those whose raw target contains `path_contains`)
        answer 200 with a JSON array of one event `megabytes` MB long (10**6 bytes each),
        streamed. Not something Auth0 does: what a host answering in its place might. Only a
        `path_contains` that names it (`/oauth/token`) reaches the token endpoint, whose answer
        is then a token that long."""
        with self._lock:
            self._oversize_rules.append(
                _OversizeRule(count, round(megabytes * 1_000_000), path_contains)
            )

    def bomb_next(
        self,
        count: int,
        *,
        encoding: str = "gzip",
        megabytes: int = 100,
        status: int = 200,
        path_contains: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """The next `count` requests (as `oversize_next` picks them) answer `status` (with
        `headers` besides, e.g. a 429's retry-after) with a compression bomb: one event
        `megabytes` MB long (2**20 bytes each) of zeros, compressed with each coding of
        `encoding` ("gzip", "deflate", or a chain such as "gzip, gzip") and sent with that
        content-encoding, whatever the client asked for. 100 MB is about 100 KB of gzip, and
        gzip of that gzip a few hundred bytes."""
        for coding in encoding.split(","):
            if coding.strip() not in _WBITS:
                raise ValueError(f"bomb_next: unknown coding {coding.strip()!r}")
        _bomb_body(encoding, megabytes)  # made now, not while a client waits for it
        with self._lock:
            rule = _BombRule(count, path_contains, status, encoding, megabytes, dict(headers or {}))
            self._hostile_rules.append(rule)

    def drip_next(self, count: int, *, interval_s: float, path_contains: str | None = None) -> None:
        """The next `count` requests (as `oversize_next` picks them) get their real answer, its
        headers at once and its body one byte every `interval_s` seconds of real time."""
        with self._lock:
            self._hostile_rules.append(_DripRule(count, path_contains, interval_s))

    def inflate(self, log_id: str, *, megabytes: float) -> None:
        """Every answer that holds this event holds it `megabytes` MB longer (a `padding`
        field), streamed: an event logged far larger than any Auth0 documents."""
        with self._lock:
            self._inflated[log_id] = round(megabytes * 1_000_000)

    def visible_events(self, user_id: str | None = None) -> list[dict[str, Any]]:
        """Copies of what the API can return now (visible, not expired), oldest first."""
        with self._lock:
            now = self.clock()
            pool = self._events if user_id is None else self._by_user.get(user_id, [])
            found = [s for s in pool if self._is_visible(s, now)]
            return [copy.deepcopy(s.event) for s in _sorted(found, "date", False)]

    # -- internals: state -----------------------------------------------------------------------

    def _new_log_id(self, now: float, visible_at: float | None) -> str:
        if visible_at is not None and visible_at > now:
            # Rounded up: an event that is not yet visible must not be "ingested" in the same
            # millisecond as one inserted and visible right now.
            ingest_ms = math.ceil(max(visible_at, self._last_ingest) * 1000)
        else:
            # Never backwards, even if a test clock is moved back.
            self._last_ingest = max(now, self._last_ingest)
            ingest_ms = math.floor(self._last_ingest * 1000)
        ingest_ms = max(ingest_ms, 0)
        moment = _EPOCH + timedelta(milliseconds=ingest_ms)
        stamp = f"{moment:%Y%m%d%H%M%S}{ingest_ms % 1000:03d}"
        tail = self._id_rng.randrange(10**24)
        # 900 + 17-digit ingestion time + 12-digit sequence + 24 digits: 56, like Auth0's ids.
        return f"900{stamp}{self._seq + 1:012d}{tail:024d}"

    def _is_visible(self, stored: _Stored, now: float) -> bool:
        if stored.visible_at is not None and now < stored.visible_at:
            return False
        if self.retention_s is not None:
            return stored.date_us >= (now - self.retention_s) * 1_000_000
        return True

    def _take_fault(
        self, target: str, *, token_endpoint: bool
    ) -> tuple[int, bool, str | None] | None:
        for rule in self._fault_rules:
            if rule.remaining <= 0:
                continue
            if rule.path_contains is None and token_endpoint:
                continue
            if rule.path_contains is not None and rule.path_contains not in target:
                continue
            rule.remaining -= 1
            return rule.status, rule.html, rule.message
        self._fault_rules = [rule for rule in self._fault_rules if rule.remaining > 0]
        if token_endpoint or self._random_fault_p <= 0 or not self._random_fault_statuses:
            return None
        if self._fault_rng.random() >= self._random_fault_p:
            return None
        status = self._fault_rng.choice(self._random_fault_statuses)
        return status, status != 500, None

    def _take_oversize(self, target: str, *, token_endpoint: bool) -> int | None:
        rule = _take_rule(self._oversize_rules, target, token_endpoint=token_endpoint)
        return rule.size if isinstance(rule, _OversizeRule) else None

    def _hostile(self, target: str, response: _Response, *, token_endpoint: bool) -> _Response:
        """`response`, or what a hostile rule (`bomb_next`, `drip_next`) makes of it."""
        with self._lock:
            rule = _take_rule(self._hostile_rules, target, token_endpoint=token_endpoint)
        if isinstance(rule, _BombRule):
            return _Response(
                rule.status,
                _bomb_body(rule.encoding, rule.megabytes),
                headers={**rule.headers, "content-encoding": rule.encoding},
            )
        if isinstance(rule, _DripRule):
            response.drip_s = rule.interval_s
        return response

    def _take_rate_token(self, now: float) -> tuple[dict[str, str], bool]:
        """Refill, then take one token. Returns the x-ratelimit-* headers and whether limited."""
        limit = self._rate_limit
        if limit is None:
            return {}, False
        if self._bucket_at is not None:
            elapsed = max(0.0, now - self._bucket_at)
            self._bucket = min(float(limit.burst), self._bucket + elapsed * limit.per_second)
        self._bucket_at = now
        limited = self._bucket < 1.0
        if not limited:
            self._bucket -= 1.0
        full_at = now + (limit.burst - self._bucket) / limit.per_second
        headers = {
            "x-ratelimit-limit": str(limit.burst),
            "x-ratelimit-remaining": str(math.floor(self._bucket)),
            "x-ratelimit-reset": str(math.ceil(full_at)),
        }
        return headers, limited

    # -- internals: request handling ------------------------------------------------------------

    def _handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> _Response:
        raw_path, _, raw_query = target.partition("?")
        if raw_path in ("/oauth/token", "/oauth/token/"):
            if method != "POST":
                return _method_not_allowed("POST")
            with self._lock:
                fault = self._take_fault(target, token_endpoint=True)
                oversize = self._take_oversize(target, token_endpoint=True)
            if fault is not None:
                response = _fault_response(*fault, {})
            elif oversize is not None:
                token = {"access_token": _PADDING_MARK + "token", "token_type": "Bearer"}
                response = _streamed_json(200, token, {"token": oversize}, {})
            else:
                response = self._token(headers, body)
            response = self._hostile(target, response, token_endpoint=True)
            self.stats._record("token", response.status, ())
            return response

        user_match = _USER_LOGS_PATH.fullmatch(raw_path) or _USER_PATH.fullmatch(raw_path)
        log_match = _LOG_PATH.fullmatch(raw_path)
        if user_match is not None:
            endpoint = "user_logs" if raw_path.endswith("/logs") else "user"
        elif raw_path == "/api/v2/logs":
            endpoint = "logs"
        elif log_match is not None:
            endpoint = "log"
        else:
            return _json_response(404, _ApiError(404, "Not Found", "not_found").body)
        path_user = unquote(user_match.group(1)) if user_match else None
        query = parse_qs(raw_query, keep_blank_values=True)
        user_ids = self._user_ids_named(path_user, query)
        if method != "GET":
            response = _method_not_allowed("GET")
        else:
            if self.latency_s > 0:
                time.sleep(self.latency_s)
            response = self._api(endpoint, path_user, query, target, headers)
            response = self._hostile(target, response, token_endpoint=False)
        self.stats._record(endpoint, response.status, user_ids)
        return response

    @staticmethod
    def _user_ids_named(path_user: str | None, query: Mapping[str, list[str]]) -> set[str]:
        if path_user is not None:
            return {path_user}
        q = _param(query, "q")
        if not q:
            return set()
        try:
            return _user_ids_in(parse_log_query(q))
        except QueryError:
            return set()

    def _api(
        self,
        endpoint: str,
        path_user: str | None,
        query: Mapping[str, list[str]],
        target: str,
        headers: Mapping[str, str],
    ) -> _Response:
        q = _param(query, "q")
        if endpoint == "logs" and q is not None and len(q) > MAX_QUERY_CHARS:
            # The front end refuses an over-long URI before Auth0 (or its limiter) sees it.
            return _json_response(414, _ApiError(414, "Request-URI Too Long", "uri_too_long").body)
        with self._lock:
            now = self.clock()
            limit_headers, limited = self._take_rate_token(now)
            if limited:
                return _json_response(429, _RATE_LIMITED_BODY, limit_headers)
            fault = self._take_fault(target, token_endpoint=False)
            if fault is not None:
                return _fault_response(*fault, limit_headers)
            oversize = self._take_oversize(target, token_endpoint=False)
            if oversize is not None:
                filler = {"date": _iso(now), "type": "sapi", "log_id": "9" * 56}
                return _streamed_json(200, [filler], {filler["log_id"]: oversize}, limit_headers)
            link: dict[str, str] = {}
            try:
                scopes = self._authorize(headers, now)
                if endpoint == "user_logs":
                    assert path_user is not None
                    payload = self._user_logs(path_user, query, scopes, now)
                elif endpoint == "user":
                    assert path_user is not None
                    payload = self._user(path_user, query, scopes)
                elif endpoint == "log":
                    payload = self._log(target, scopes, now)
                else:
                    payload = self._logs(query, scopes, now, link)
            except _ApiError as exc:
                return _json_response(exc.status, exc.body, limit_headers)
            if self._inflated and _holds_any(payload, self._inflated):
                return _streamed_json(200, payload, self._inflated, {**limit_headers, **link})
            return _json_response(200, payload, {**limit_headers, **link})

    def _token(self, headers: Mapping[str, str], body: bytes) -> _Response:
        form = _token_form(headers, body)
        grant_type = form.get("grant_type", "")
        if grant_type != "client_credentials":
            return _json_response(
                400 if not grant_type else 403,
                {
                    "error": "invalid_request" if not grant_type else "unauthorized_client",
                    "error_description": "Missing required parameter: grant_type"
                    if not grant_type
                    else f"Grant type '{grant_type}' not allowed for the client.",
                },
            )
        if (
            form.get("client_id") != self.client_id
            or form.get("client_secret") != self.client_secret
        ):
            return _json_response(
                401, {"error": "access_denied", "error_description": "Unauthorized"}
            )
        audience = form.get("audience", "")
        if audience != f"https://{self.domain}/api/v2/":
            return _json_response(
                403,
                {
                    "error": "access_denied",
                    "error_description": f"Service not enabled within domain: {audience}",
                },
            )
        with self._lock:
            token = secrets.token_urlsafe(32)
            scopes = self._scopes
            self._tokens[token] = _Token(self.clock() + self.token_ttl_s, scopes)
        return _json_response(
            200,
            {
                "access_token": token,
                "expires_in": self.token_ttl_s,
                "scope": " ".join(sorted(scopes)),
                "token_type": "Bearer",
            },
            {"cache-control": "no-store"},
        )

    def _authorize(self, headers: Mapping[str, str], now: float) -> frozenset[str]:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        record = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if record is None:
            raise _ApiError(401, "Invalid token.", "invalid_token")
        if now >= record.expires_at:
            raise _ApiError(401, "Invalid token.", "token_expired")
        return record.scopes

    def _user_logs(
        self, user_id: str, query: Mapping[str, list[str]], scopes: frozenset[str], now: float
    ) -> Any:
        if not scopes & {"read:logs", "read:logs_users"}:
            raise _ApiError(
                403,
                "Insufficient scope; expected any of: read:logs, read:logs_users.",
                "insufficient_scope",
            )
        paging = _Paging.parse(query, min_per_page=1)
        deleted = user_id in self._deleted_users
        if deleted or (user_id not in self._known_users and self.unknown_user_status == 404):
            raise _ApiError(404, "The user does not exist.", "inexistent_user")
        found = [s for s in self._by_user.get(user_id, []) if self._is_visible(s, now)]
        return self._page(found, paging, fields=None)

    def _user(self, user_id: str, query: Mapping[str, list[str]], scopes: frozenset[str]) -> Any:
        """GET /api/v2/users/{id} ("Get a User", read:users): the user, or 404 "The user does
        not exist." for an id the tenant does not know (never had, or deleted). `fields` and
        `include_fields` choose the fields returned, as Auth0's do."""
        if "read:users" not in scopes:
            raise _ApiError(
                403, "Insufficient scope; expected any of: read:users.", "insufficient_scope"
            )
        if user_id not in self._known_users or user_id in self._deleted_users:
            raise _ApiError(404, "The user does not exist.", "inexistent_user")
        provider, _, rest = user_id.partition("|")
        user: JsonDict = {
            "user_id": user_id,
            "created_at": "2026-01-01T00:00:00.000Z",
            "identities": [{"provider": provider, "user_id": rest, "isSocial": False}],
            "logins_count": len(self._by_user.get(user_id, [])),
        }
        fields = _FieldFilter.parse(query)
        return fields.apply(user) if fields is not None else user

    def _log(self, target: str, scopes: frozenset[str], now: float) -> Any:
        """GET /api/v2/logs/{id} (the OpenAPI extract): one retained, visible event, or 404
        "Log not found."; either logs scope will do."""
        if not scopes & {"read:logs", "read:logs_users"}:
            raise _ApiError(
                403,
                "Insufficient scope; expected any of: read:logs, read:logs_users.",
                "insufficient_scope",
            )
        match = _LOG_PATH.fullmatch(target.partition("?")[0])
        assert match is not None
        log_id = unquote(match.group(1))
        for stored in self._events:
            if stored.log_id == log_id and self._is_visible(stored, now):
                return dict(stored.event)
        raise _ApiError(404, "Log not found.", "inexistent_log")

    def _logs(
        self,
        query: Mapping[str, list[str]],
        scopes: frozenset[str],
        now: float,
        link: dict[str, str],
    ) -> Any:
        if "read:logs" not in scopes:
            raise _ApiError(
                403, "Insufficient scope; expected any of: read:logs.", "insufficient_scope"
            )
        if "from" in query or "take" in query:
            return self._checkpoint(query, now, link)
        paging = _Paging.parse(query, min_per_page=0)
        q = _param(query, "q") or ""
        try:
            node = parse_log_query(q)
        except QueryError as exc:
            raise _ApiError(400, f"Invalid query: {exc}", "invalid_query_string") from exc
        found = [
            s
            for s in self._search_pool(node)
            if self._is_visible(s, now) and (node is None or node.matches(s))
        ]
        return self._page(found, paging, fields=_FieldFilter.parse(query))

    def _search_pool(self, node: _Node | None) -> list[_Stored]:
        # The forwarder's searches name one user; scanning only that user's events keeps large
        # tenants (the benchmark) fast. Any other query scans everything.
        terms = node.items if isinstance(node, _All) else (node,)
        for term in terms:
            if isinstance(term, _Term) and term.field == "user_id" and term.value is not None:
                return self._by_user.get(term.value, [])
        return self._events

    def _checkpoint(
        self, query: Mapping[str, list[str]], now: float, link: dict[str, str]
    ) -> list[JsonDict]:
        """Logs "newer than a given log_id", ordered by log_id, `take` of them (default 50, at
        most 100); every other parameter, q included, is ignored. `from` is a bound, not a
        lookup: an id Auth0 never issued (Elastic's integration builds one from a timestamp) or
        one that expired still answers with the retained events after it. Each answer carries
        the `next` link Auth0 documents: `from` the last id returned, or the same URL when
        nothing was (Auth0 docs, "Retrieve Log Events Using the Management API")."""
        take_text = _param(query, "take")
        take = DEFAULT_TAKE if take_text is None else _int_param("take", take_text, 1, MAX_PER_PAGE)
        after = _param(query, "from") or ""
        if after and self.unknown_from_status is not None and not self._retains(after, now):
            # Not what Auth0 documents: a switch to test clients against a stricter server.
            raise _ApiError(
                self.unknown_from_status, f"Log {after} does not exist.", "inexistent_log"
            )
        found = [s for s in self._events if s.log_id > after and self._is_visible(s, now)]
        found.sort(key=lambda s: (s.log_id, s.seq))
        page = found[:take]
        following = page[-1].log_id if page else after
        next_query = urlencode({"from": following, "take": take})
        link["link"] = f'<{self.base_url}/api/v2/logs?{next_query}>; rel="next"'
        return [s.event for s in page]

    def _retains(self, log_id: str, now: float) -> bool:
        return any(s.log_id == log_id and self._is_visible(s, now) for s in self._events)

    def _page(self, found: list[_Stored], paging: _Paging, *, fields: _FieldFilter | None) -> Any:
        ordered = _sorted(found, paging.sort_field, paging.descending)
        start = paging.page * paging.per_page if paging.paged else 0
        logs = [s.event for s in ordered[start : start + paging.per_page]]
        if fields is not None:
            logs = [fields.apply(event) for event in logs]
        if not paging.include_totals:
            return logs
        return {
            "start": start,
            "limit": paging.per_page,
            "length": len(logs),
            "total": len(logs) if self.totals_page_only else len(ordered),
            "logs": logs,
        }


# -- request parameters -----------------------------------------------------------------------


def _param(query: Mapping[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _int_param(name: str, text: str, low: int, high: int | None) -> int:
    if not _INTEGER.fullmatch(text.strip()):
        raise _query_validation(name, "Expected type integer but found type string")
    value = int(text)
    if value < low:
        raise _query_validation(name, f"Value {value} is less than minimum of {low}")
    if high is not None and value > high:
        raise _query_validation(name, f"Value {value} is greater than maximum of {high}")
    return value


def _bool_param(name: str, text: str | None, default: bool) -> bool:
    if text is None:
        return default
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    raise _query_validation(name, "Expected type boolean but found type string")


@dataclass(frozen=True, slots=True)
class _Paging:
    page: int
    per_page: int
    paged: bool
    sort_field: str
    descending: bool
    include_totals: bool

    @classmethod
    def parse(cls, query: Mapping[str, list[str]], *, min_per_page: int) -> _Paging:
        page_text = _param(query, "page")
        page = 0 if page_text is None else _int_param("page", page_text, 0, None)
        per_page_text = _param(query, "per_page")
        paged = per_page_text is not None
        per_page = DEFAULT_PAGE_SIZE
        if per_page_text is not None:
            per_page = _int_param("per_page", per_page_text, min_per_page, MAX_PER_PAGE)
            if (page + 1) * per_page > SEARCH_CAP:
                raise _cap_error(page)
        sort = _param(query, "sort") or "date:-1"
        sort_match = _SORT_PARAM.fullmatch(sort)
        if sort_match is None:
            raise _query_validation(
                "sort", f"String does not match pattern ^([a-zA-Z_.$-]+:(-1|1))?$: {sort}"
            )
        return cls(
            page=page if paged else 0,
            per_page=per_page,
            paged=paged,
            sort_field=sort_match.group(1),
            descending=sort_match.group(2) == "-1",
            include_totals=_bool_param("include_totals", _param(query, "include_totals"), False),
        )


@dataclass(frozen=True, slots=True)
class _FieldFilter:
    names: tuple[str, ...]
    include: bool

    @classmethod
    def parse(cls, query: Mapping[str, list[str]]) -> _FieldFilter | None:
        include = _bool_param("include_fields", _param(query, "include_fields"), True)
        names = tuple(n.strip() for n in (_param(query, "fields") or "").split(",") if n.strip())
        return cls(names, include) if names else None

    def apply(self, event: Mapping[str, Any]) -> JsonDict:
        return {k: v for k, v in event.items() if (k in self.names) == self.include}


def _token_form(headers: Mapping[str, str], body: bytes) -> dict[str, str]:
    text = body.decode("utf-8", errors="replace")
    # Auth0 takes JSON bodies at /oauth/token too; accepting both keeps the simulator lenient
    # where Auth0 is lenient.
    if headers.get("content-type", "").startswith("application/json"):
        try:
            parsed = json.loads(text)
        except ValueError:
            return {}
        return {k: str(v) for k, v in parsed.items()} if isinstance(parsed, dict) else {}
    return {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}


def _fault_response(
    status: int, html: bool, message: str | None, limit_headers: Mapping[str, str]
) -> _Response:
    if html:
        # A gateway in front of Auth0 answered: no JSON, no rate-limit headers.
        return _html_response(status)
    if status == 429:
        return _json_response(429, _RATE_LIMITED_BODY, limit_headers)
    phrase = _phrase(status)
    code = re.sub(r"\W+", "_", phrase.lower()).strip("_")
    return _json_response(status, _ApiError(status, message or phrase, code).body, limit_headers)


def _take_rule(rules: Sequence[_AnyRule], target: str, *, token_endpoint: bool) -> _AnyRule | None:
    """The first rule with uses left whose `path_contains` is in the target (only a rule that
    names it reaches the token endpoint), one use of it taken."""
    for rule in rules:
        if rule.path_contains is None and token_endpoint:
            continue
        if rule.remaining > 0 and (rule.path_contains is None or rule.path_contains in target):
            rule.remaining -= 1
            return rule
    return None


def _holds_any(payload: Any, log_ids: Mapping[str, int]) -> bool:
    entries = payload.get("logs", [payload]) if isinstance(payload, dict) else payload
    return any(isinstance(e, dict) and e.get("log_id") in log_ids for e in entries or ())


def _iso(epoch_s: float) -> str:
    moment = datetime.fromtimestamp(epoch_s, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _method_not_allowed(allowed: str) -> _Response:
    body = _ApiError(405, "Method Not Allowed", "method_not_allowed").body
    return _json_response(405, body, {"allow": allowed})


# -- HTTP plumbing ----------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    simulator: Auth0Simulator

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def track(self, connection: socket.socket, *, alive: bool) -> None:
        with self._connections_lock:
            if alive:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        # Keep-alive connections would otherwise keep being served after stop().
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up and stop() cutting connections are normal here; anything else is
        # a bug in this file, and its traceback should be seen.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes; with Nagle on, each answer waits ~40 ms for an ACK.
    disable_nagle_algorithm = True
    server_version = "auth0-simulator"
    sys_version = ""
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, alive=True)

    def finish(self) -> None:
        self.server.track(self.connection, alive=False)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        # Silent: test and demo output must not be buried under request logs.
        return

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        try:
            length = int(self.headers.get("content-length") or 0)
        except ValueError:
            length = 0
        body = self.rfile.read(length) if length > 0 else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            response = self.server.simulator._handle(method, self.path, headers, body)
        except Exception as exc:  # a bug here must not hang the client
            error = _ApiError(500, f"simulator error: {type(exc).__name__}: {exc}", "internal")
            response = _json_response(500, error.body)
        self.send_response(response.status)
        self.send_header("content-type", response.content_type)
        self.send_header("content-length", str(response.length))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if response.drip_s is not None:
            self._drip(response.body, response.drip_s)
        elif response.parts is None:
            self.wfile.write(response.body)
        else:
            self._stream(response)

    def _drip(self, body: bytes, interval_s: float) -> None:
        """Write `body` a byte at a time, `interval_s` apart, until the client hangs up."""
        try:
            for byte in body:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(interval_s)
        except OSError:
            self.close_connection = True

    def _stream(self, response: _Response) -> None:
        """Write a streamed answer until its end or until the client hangs up, and record how
        much the socket took. A small send buffer keeps what sits unread in it small."""
        assert response.parts is not None
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        sent = 0
        try:
            for part in response.parts:
                if isinstance(part, bytes):
                    self.wfile.write(part)
                    sent += len(part)
                    continue
                left = part
                while left > 0:
                    chunk = _PAD_CHUNK[: min(left, len(_PAD_CHUNK))]
                    self.wfile.write(chunk)
                    sent += len(chunk)
                    left -= len(chunk)
        except OSError:  # the client hung up: what it did not read is never sent
            self.close_connection = True
        finally:
            answer = StreamedAnswer(self.path, response.length, sent)
            self.server.simulator.stats._record_streamed(answer)
