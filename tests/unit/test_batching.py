"""Batching and naming: the CloudWatch limits are proven here, since moto does not enforce them."""

from __future__ import annotations

import gzip
import itertools
import json
import re
from random import Random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from log_forwarder.records import OutputLine, batch_id_for
from log_forwarder.sinks.batching import (
    CW_EVENT_OVERHEAD_BYTES,
    CW_MAX_BATCH_BYTES,
    CW_MAX_BATCH_EVENTS,
    CW_MAX_BATCH_SPAN_MS,
    CW_MAX_EVENT_BYTES,
    CloudWatchLimits,
    cloudwatch_batches,
    s3_objects,
    stream_name_for,
    user_slug,
)

SMALL = CloudWatchLimits(
    max_batch_bytes=200, event_overhead_bytes=26, max_batch_events=5, max_batch_span_ms=1_000
)
DAY_MS = 24 * 3600 * 1000
# Characters of 1, 2, 3 and 4 UTF-8 bytes, so that byte counts and character counts differ.
CHARS = st.sampled_from(["a", "é", "€", "😀"])


def batch_bytes(batch: list[OutputLine], limits: CloudWatchLimits) -> int:
    return sum(len(item.line.encode("utf-8")) + limits.event_overhead_bytes for item in batch)


def assert_valid(
    lines: list[OutputLine], batches: list[list[OutputLine]], limits: CloudWatchLimits
) -> None:
    # Nothing lost, duplicated or reordered.
    assert [item for batch in batches for item in batch] == lines
    for batch in batches:
        assert batch, "no empty batches"
        assert batch_bytes(batch, limits) <= limits.max_batch_bytes
        assert len(batch) <= limits.max_batch_events
        assert batch[-1].timestamp_ms - batch[0].timestamp_ms < limits.max_batch_span_ms
    # Greedy: each batch was closed only because the next line would have broken a limit.
    for batch, following in itertools.pairwise(batches):
        grown = [*batch, following[0]]
        assert (
            batch_bytes(grown, limits) > limits.max_batch_bytes
            or len(grown) > limits.max_batch_events
            or grown[-1].timestamp_ms - grown[0].timestamp_ms >= limits.max_batch_span_ms
        )


@st.composite
def sorted_lines(
    draw: st.DrawFn, *, max_chars: int, max_count: int, max_step_ms: int
) -> list[OutputLine]:
    count = draw(st.integers(0, max_count))
    # Some examples with short lines, so that the event-count limit is reached too.
    longest = draw(st.sampled_from([2, 10, max_chars]))
    timestamp = draw(st.integers(0, 10**12))
    lines = []
    for index in range(count):
        timestamp += draw(st.integers(0, max_step_ms))
        text = draw(st.text(CHARS, max_size=longest))
        lines.append(OutputLine(timestamp, text, f"id{index}"))
    return lines


@settings(max_examples=300, deadline=None)
@given(sorted_lines(max_chars=43, max_count=40, max_step_ms=400))
def test_small_limits_are_never_broken_and_no_line_is_lost(lines: list[OutputLine]) -> None:
    # GIVEN random lines (up to 172 bytes each, the small limit's largest event) in time order
    # WHEN they are batched under small limits that every dimension can reach
    batches = cloudwatch_batches(lines, limits=SMALL)
    # THEN every batch respects every limit and the batches are the lines, in order
    assert_valid(lines, batches, SMALL)


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 400_000), max_size=12),
    steps=st.lists(st.integers(0, 9 * 3600 * 1000), min_size=12, max_size=12),
)
def test_real_limits_are_never_broken(sizes: list[int], steps: list[int]) -> None:
    # GIVEN lines of up to 400 KB spread over up to several days
    timestamp = 1_700_000_000_000
    lines = []
    for index, size in enumerate(sizes):
        timestamp += steps[index]
        lines.append(OutputLine(timestamp, "x" * size, f"id{index}"))
    # WHEN they are batched with the real PutLogEvents limits
    batches = cloudwatch_batches(lines)
    # THEN no batch exceeds 1 MiB with overhead, 10,000 events or a 24 h span
    assert_valid(lines, batches, CloudWatchLimits())


def test_real_limit_values() -> None:
    assert CW_MAX_BATCH_BYTES == 1_048_576
    assert CW_EVENT_OVERHEAD_BYTES == 26
    assert CW_MAX_BATCH_EVENTS == 10_000
    assert CW_MAX_BATCH_SPAN_MS == 86_400_000
    assert CW_MAX_EVENT_BYTES == 1_048_550


def test_exactly_one_mebibyte_with_overhead_is_one_batch() -> None:
    # GIVEN two lines whose bytes plus 2 x 26 overhead are exactly 1,048,576
    first = 500_000
    second = CW_MAX_BATCH_BYTES - 2 * CW_EVENT_OVERHEAD_BYTES - first
    lines = [OutputLine(1, "a" * first, "a"), OutputLine(2, "b" * second, "b")]
    # WHEN batched / THEN they fit in one batch
    assert cloudwatch_batches(lines) == [lines]
    # AND one more byte splits them
    bigger = [lines[0], OutputLine(2, "b" * (second + 1), "b")]
    assert cloudwatch_batches(bigger) == [[bigger[0]], [bigger[1]]]


def test_largest_single_event_fits_and_one_byte_more_is_refused() -> None:
    # GIVEN a line of exactly 1,048,550 bytes (1 MiB minus its overhead), in 2-byte characters
    largest = OutputLine(1, "é" * (CW_MAX_EVENT_BYTES // 2), "big")
    assert len(largest.line.encode("utf-8")) == CW_MAX_EVENT_BYTES
    # WHEN batched / THEN it is a batch of its own
    assert cloudwatch_batches([largest]) == [[largest]]
    # AND a line one byte larger (counted in UTF-8, not characters) is refused with its log_id
    too_big = OutputLine(1, "é" * (CW_MAX_EVENT_BYTES // 2) + "a", "too-big")
    with pytest.raises(ValueError, match="too-big"):
        cloudwatch_batches([too_big])


def test_multibyte_lines_are_counted_in_bytes() -> None:
    # GIVEN 4-byte characters: 100,000 of them are 400,000 bytes, far more than their length
    lines = [OutputLine(index, "😀" * 100_000, str(index)) for index in range(3)]
    # WHEN batched / THEN two fit (800,052 bytes) and the third would not (1,200,078)
    assert [len(batch) for batch in cloudwatch_batches(lines)] == [2, 1]


def test_ten_thousand_events_are_one_batch_and_one_more_starts_another() -> None:
    lines = [OutputLine(index, "{}", str(index)) for index in range(CW_MAX_BATCH_EVENTS + 1)]
    batches = cloudwatch_batches(lines)
    assert [len(batch) for batch in batches] == [CW_MAX_BATCH_EVENTS, 1]
    assert cloudwatch_batches(lines[:-1]) == [lines[:-1]]


def test_span_must_stay_strictly_under_24_hours() -> None:
    start = 1_700_000_000_000
    within = [OutputLine(start, "a"), OutputLine(start + CW_MAX_BATCH_SPAN_MS - 1, "b")]
    assert cloudwatch_batches(within) == [within]
    exactly = [OutputLine(start, "a"), OutputLine(start + CW_MAX_BATCH_SPAN_MS, "b")]
    assert cloudwatch_batches(exactly) == [[exactly[0]], [exactly[1]]]


def test_unsorted_input_is_refused() -> None:
    with pytest.raises(ValueError, match="sorted"):
        cloudwatch_batches([OutputLine(2, "a"), OutputLine(1, "b")])


def test_no_lines_no_batches() -> None:
    assert cloudwatch_batches([]) == []


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=700), st.text(min_size=1, max_size=700))
def test_stream_names_are_legal_and_unique(first: str, second: str) -> None:
    name = stream_name_for(first)
    assert ":" not in name
    assert "*" not in name
    assert 1 <= len(name) <= 512
    assert name == stream_name_for(first)
    if first != second:
        assert name != stream_name_for(second)


def test_stream_names_stay_readable_and_distinguish_ids_that_sanitise_alike() -> None:
    # GIVEN two ids that differ only in characters CloudWatch forbids
    first, second = stream_name_for("waad|a:b"), stream_name_for("waad|a*b")
    # THEN both read like the id, and they still differ
    assert first.startswith("waad|a_b.")
    assert second.startswith("waad|a_b.")
    assert first != second
    assert stream_name_for("auth0|5f7c8ec7c33c6c004bbafe82").startswith(
        "auth0|5f7c8ec7c33c6c004bbafe82."
    )
    with pytest.raises(ValueError, match="empty"):
        stream_name_for("")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=20), max_size=20), st.randoms())
def test_batch_id_depends_on_the_set_only(ids: list[str], rng: Random) -> None:
    shuffled = [*ids, *ids[:3]]
    rng.shuffle(shuffled)
    assert batch_id_for(shuffled) == batch_id_for(ids)
    assert re.fullmatch(r"[0-9a-f]{32}", batch_id_for(ids))


def test_batch_ids_differ_for_different_sets() -> None:
    assert batch_id_for(["ab", "c"]) != batch_id_for(["a", "bc"])
    assert batch_id_for(["a"]) != batch_id_for(["a", "b"])
    assert batch_id_for(iter(["x", "y"])) == batch_id_for(("y", "x"))


def gunzip_lines(body: bytes) -> list[str]:
    text = gzip.decompress(body).decode("utf-8")
    assert text.endswith("\n")
    return text[:-1].split("\n")


def test_s3_objects_split_by_utc_day_with_hive_partitions() -> None:
    # GIVEN lines either side of midnight UTC (2024-01-01T23:59:59.999Z / 2024-01-02T00:00:00Z)
    midnight = 1_704_153_600_000
    lines = [
        OutputLine(midnight - 1, json.dumps({"log_id": "a", "description": "é"}), "a"),
        OutputLine(midnight, json.dumps({"log_id": "b"}), "b"),
        OutputLine(midnight + 5, json.dumps({"log_id": "c"}), "c"),
    ]
    # WHEN grouped into objects
    objects = s3_objects(lines, prefix="auth0-logs", user_id="auth0|abc", batch_id="f" * 32)
    # THEN one object per day, keyed prefix/dt=YYYY-MM-DD/<user slug>/<batch_id>.jsonl.gz
    slug = user_slug("auth0|abc")
    assert [obj.key for obj in objects] == [
        f"auth0-logs/dt=2024-01-01/{slug}/{'f' * 32}.jsonl.gz",
        f"auth0-logs/dt=2024-01-02/{slug}/{'f' * 32}.jsonl.gz",
    ]
    # AND each body is gzip of the day's lines, one per line, in order, with a final newline
    assert gunzip_lines(objects[0].body) == [lines[0].line]
    assert gunzip_lines(objects[1].body) == [lines[1].line, lines[2].line]
    assert [obj.line_count for obj in objects] == [1, 2]


def test_s3_objects_are_byte_identical_for_the_same_input() -> None:
    lines = [OutputLine(1_704_153_600_000, '{"log_id":"a"}', "a")]
    first = s3_objects(lines, prefix="p/", user_id="u", batch_id="0" * 32)
    second = s3_objects(lines, prefix="p/", user_id="u", batch_id="0" * 32)
    assert first == second


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [("", ""), ("auth0-logs/", "auth0-logs/"), ("auth0-logs", "auth0-logs/"), ("/a/b//", "a/b/")],
)
def test_s3_prefix_is_normalised(prefix: str, expected: str) -> None:
    (obj,) = s3_objects([OutputLine(0, "{}")], prefix=prefix, user_id="u", batch_id="b")
    assert obj.key.startswith(f"{expected}dt=1970-01-01/")


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=300), st.text(min_size=1, max_size=300))
def test_user_slugs_are_safe_and_unique(first: str, second: str) -> None:
    slug = user_slug(first)
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,90}", slug)
    if first != second:
        assert slug != user_slug(second)


def test_no_lines_no_objects() -> None:
    assert s3_objects([], prefix="p/", user_id="u", batch_id="b") == []
