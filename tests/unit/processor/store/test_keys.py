"""The partition store's key layout: round trips and byte order for every table, prefix scans that
catch exactly their rows, and tables and partitions whose key ranges never overlap."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processor.core import TimerKey, TimerKind
from processor.store import keys
from processor.store.keys import FsmVar, KeyFormatError, KeyKind, TableKey

PARTITIONS = st.integers(0, 0xFFFF)
# Few characters, NUL and its escape's neighbours among them, so prefixes and collisions are common.
TEXT = st.text(alphabet=["a", "b", "\x00", "\x01", "\xff", "\U0001f600"], max_size=4)
BYTES = st.binary(max_size=6)
INVOCATION_IDS = st.binary(min_size=24, max_size=24) | st.sampled_from([b"\x00" * 24, b"\xff" * 24])
U16 = st.integers(0, 2**16 - 1)
U32 = st.integers(0, 2**32 - 1)
U64 = st.integers(0, 2**64 - 1)

FIELDS = {
    keys.FSM: (U16,),
    keys.DEDUP: (TEXT,),
    keys.STATUS: (INVOCATION_IDS,),
    keys.JOURNAL: (INVOCATION_IDS, U32),
    keys.STATE: (TEXT, TEXT, BYTES),
    keys.LOCKS: (TEXT, TEXT),
    keys.INBOX: (TEXT, TEXT, U64),
    keys.TIMERS: (U64, INVOCATION_IDS, st.sampled_from(TimerKind), U32),
    keys.OUTBOX: (U64,),
    keys.PROMISES: (TEXT, TEXT, TEXT),
}


def rows(table: TableKey) -> st.SearchStrategy[tuple]:
    return st.tuples(PARTITIONS, *FIELDS[table])


@st.composite
def any_row(draw: st.DrawFn) -> tuple[TableKey, tuple]:
    table = draw(st.sampled_from(keys.TABLES))
    return table, draw(rows(table))


@st.composite
def two_rows(draw: st.DrawFn) -> tuple[TableKey, tuple, tuple]:
    table = draw(st.sampled_from(keys.TABLES))
    return table, draw(rows(table)), draw(rows(table))


def test_every_table_is_covered() -> None:
    assert set(FIELDS) == set(keys.TABLES)
    assert {t.kind for t in keys.TABLES} == set(KeyKind)


def test_assigned_codes_never_change() -> None:
    # A prefix or code, once assigned, is never reused: stored data depends on them.
    assert {k.name: k.value for k in KeyKind} == {
        "FSM": b"fs",
        "DEDUP": b"de",
        "STATUS": b"iS",
        "JOURNAL": b"j2",
        "STATE": b"st",
        "LOCKS": b"lo",
        "INBOX": b"ib",
        "TIMERS": b"ti",
        "OUTBOX": b"ob",
        "PROMISES": b"pr",
    }
    assert {v.name: v.value for v in FsmVar} == {
        "INBOX_SEQ": 0,
        "OUTBOX_INDEX": 1,
        "APPLIED_LSN": 2,
        "LEADER": 7,
    }
    assert {k.name: c for k, c in keys.TIMER_KIND_CODE.items()} == {"SLEEP": 1, "INVOKE": 2, "CLEANUP": 3}


def test_timer_kind_codes_follow_the_declaration_order() -> None:
    # TimerKey orders kinds by declaration; the stored order must agree.
    assert [keys.TIMER_KIND_CODE[k] for k in TimerKind] == sorted(keys.TIMER_KIND_CODE.values())
    assert set(keys.TIMER_KIND_CODE) == set(TimerKind)


@given(any_row())
def test_round_trip(row: tuple[TableKey, tuple]) -> None:
    table, values = row
    assert table.decode(table.encode(*values)) == values


@given(two_rows())
def test_byte_order_is_field_order(pair: tuple[TableKey, tuple, tuple]) -> None:
    table, a, b = pair
    ka, kb = table.encode(*a), table.encode(*b)
    assert (ka < kb) == (a < b)
    assert (ka == kb) == (a == b)


@given(any_row(), st.data())
def test_prefix_bounds_hold_exactly_the_rows_with_those_leading_fields(
    row: tuple[TableKey, tuple], data: st.DataObject
) -> None:
    table, values = row
    key = table.encode(*values)
    n = data.draw(st.integers(0, len(table.fields)), label="leading fields")
    lower, upper = table.bounds(*values[: n + 1])
    assert lower <= key < upper
    other = data.draw(rows(table), label="other row")
    other_key = table.encode(*other)
    assert (lower <= other_key < upper) == (other[: n + 1] == values[: n + 1])


@given(any_row(), st.sampled_from(keys.TABLES), PARTITIONS)
def test_tables_and_partitions_do_not_overlap(
    row: tuple[TableKey, tuple], other: TableKey, partition: int
) -> None:
    table, values = row
    key = table.encode(*values)
    lower, upper = other.bounds(partition)
    inside = lower <= key < upper
    assert inside == (other is table and partition == values[0])


def test_state_scans_do_not_catch_keys_that_extend_the_key() -> None:
    lower, upper = keys.STATE.bounds(1, "Counter", "a")
    for service, key in [
        ("Counter", "a\x00"),
        ("Counter", "a\x00b"),
        ("Counter", "ab"),
        ("Counter\x00", "a"),
    ]:
        assert not lower <= keys.STATE.encode(1, service, key, b"n") < upper, (service, key)
    assert lower <= keys.STATE.encode(1, "Counter", "a", b"\x00\x01") < upper


@given(BYTES.filter(lambda p: p.strip(b"\xff") != b""), st.binary(max_size=8))
def test_successor_is_the_least_upper_bound_of_a_prefix(prefix: bytes, other: bytes) -> None:
    upper = keys.successor(prefix)
    assert prefix < upper
    assert (prefix <= other < upper) == other.startswith(prefix)
    assert prefix <= prefix + other < upper


def test_timer_keys() -> None:
    timer = TimerKey(1234, bytes(range(24)), TimerKind.INVOKE, 7)
    assert keys.decode_timer_key(keys.timer_key(5, timer)) == timer
    earlier = TimerKey(1234, bytes(range(24)), TimerKind.SLEEP, 99)
    assert keys.timer_key(5, earlier) < keys.timer_key(5, timer)
    assert earlier < timer


@pytest.mark.parametrize(
    ("table", "values", "message"),
    [
        (keys.FSM, (70_000, FsmVar.APPLIED_LSN), "partition=70000"),
        (keys.STATUS, (1, b"short"), "invocation_id=b'short'"),
        (keys.JOURNAL, (1, b"\x00" * 24, -1), "index=-1"),
        (keys.OUTBOX, (1, 2**64), "index="),
        (keys.STATE, (1, b"bytes", "k", b"n"), "service=b'bytes'"),
        (keys.STATE, (1, "svc", "k", "str"), "name='str'"),
        (keys.INBOX, (1, "\ud800", "k", 1), "service="),
    ],
)
def test_values_that_do_not_fit_are_refused_by_name(table: TableKey, values: tuple, message: str) -> None:
    with pytest.raises(KeyFormatError, match="does not fit the key layout") as e:
        table.encode(*values)
    assert message in str(e.value)


def test_wrong_field_count_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        keys.JOURNAL.encode(1, b"\x00" * 24)
    with pytest.raises(TypeError):
        keys.OUTBOX.prefix(1, 2, 3)


@pytest.mark.parametrize(
    ("table", "key"),
    [
        (keys.STATUS, keys.JOURNAL.encode(1, b"\x00" * 24, 0)),  # another table's key
        (keys.STATUS, keys.STATUS.encode(1, b"\x00" * 24) + b"x"),  # trailing bytes
        (keys.JOURNAL, keys.JOURNAL.encode(1, b"\x00" * 24, 0)[:-1]),  # truncated
        (keys.LOCKS, keys.LOCKS.prefix(1, "svc") + b"unterminated"),
        (keys.TIMERS, keys.TIMERS.prefix(1, 5, b"\x00" * 24) + b"\x09" + b"\x00" * 4),  # unknown kind
    ],
)
def test_malformed_keys_are_refused(table: TableKey, key: bytes) -> None:
    with pytest.raises(KeyFormatError):
        table.decode(key)
