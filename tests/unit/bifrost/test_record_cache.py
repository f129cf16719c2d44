"""The sequencer's record cache: bounded, contiguous, trimmed with the log."""

from __future__ import annotations

from bifrost.limits import RECORD_OVERHEAD_BYTES
from bifrost.replicated.record_cache import RecordCache

BIG = 1 << 30


def recs(first: int, n: int) -> list[bytes]:
    return [f"r{o}".encode() for o in range(first, first + n)]


def test_get_returns_the_cached_range_up_to_the_end_asked_for() -> None:
    c = RecordCache()
    c.put(1, recs(1, 3))
    c.put(4, recs(4, 2))
    assert c.get(2, 5, BIG) == tuple(recs(2, 3))
    assert c.get(4, 100, BIG) == tuple(recs(4, 2)), "never past the newest cached record"
    assert c.get(6, 100, BIG) == ()
    assert c.get(0, 3, BIG) == (), "the first offset asked for must itself be cached"


def test_the_oldest_records_go_first_past_either_bound() -> None:
    c = RecordCache(max_records=4)
    c.put(1, recs(1, 6))
    assert (c.first, c.end) == (3, 7)
    assert c.get(1, 7, BIG) == ()
    b = RecordCache(max_bytes=10)  # "r1".."r9" are 2 bytes each: 5 fit
    b.put(1, recs(1, 9))
    assert (b.first, b.end) == (5, 10)


def test_a_batch_after_a_gap_starts_the_cache_afresh() -> None:
    c = RecordCache()
    c.put(1, recs(1, 3))
    c.put(10, recs(10, 2))
    assert (c.first, c.end) == (10, 12)
    assert c.get(1, 12, BIG) == ()


def test_get_stops_at_the_byte_limit_counted_as_on_the_wire() -> None:
    c = RecordCache()
    c.put(1, recs(1, 5))
    one = 2 + RECORD_OVERHEAD_BYTES
    assert c.get(1, 6, 2 * one) == tuple(recs(1, 2))
    assert c.get(1, 6, one - 1) == ()


def test_trimmed_records_are_never_returned() -> None:
    c = RecordCache()
    c.put(1, recs(1, 5))
    c.trim(3)
    assert c.get(1, 6, BIG) == ()
    assert c.get(4, 6, BIG) == tuple(recs(4, 2))
    c.trim(100)
    assert c.get(5, 6, BIG) == ()
