"""The sans-I/O CAS core: its table, checked case by case and against a naive restatement."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metadata.core import (
    MAX_KEY_LENGTH,
    TABLE,
    Observation,
    Precondition,
    PreconditionKind,
    Verdict,
    Versioned,
    decide,
    validate_key,
)
from metadata.errors import InvalidKey


def test_table_covers_every_precondition_and_observation():
    assert set(TABLE) == {(kind, obs) for kind in PreconditionKind for obs in Observation}


@pytest.mark.parametrize(
    ("current", "precondition", "applies"),
    [
        (None, Precondition.none(), True),
        (Versioned(b"x", 3), Precondition.none(), True),
        (None, Precondition.does_not_exist(), True),
        (Versioned(b"x", 3), Precondition.does_not_exist(), False),
        (None, Precondition.matches(3), False),
        (Versioned(b"x", 3), Precondition.matches(3), True),
        (Versioned(b"x", 4), Precondition.matches(3), False),
    ],
)
def test_decisions(current, precondition, applies):
    decision = decide(current, precondition)
    assert decision.applies is applies
    assert decision.verdict is (Verdict.APPLY if applies else Verdict.REFUSE)
    assert decision.current_version == (None if current is None else current.version)


versions = st.integers(min_value=1, max_value=2**63 - 1)
currents = st.none() | st.builds(Versioned, st.binary(max_size=8), versions)
preconditions = st.one_of(
    st.just(Precondition.none()),
    st.just(Precondition.does_not_exist()),
    st.builds(Precondition.matches, versions),
)


@given(currents, preconditions)
def test_decide_agrees_with_a_naive_restatement(current, precondition):
    if precondition.kind is PreconditionKind.NONE:
        expected = True
    elif precondition.kind is PreconditionKind.DOES_NOT_EXIST:
        expected = current is None
    else:
        expected = current is not None and current.version == precondition.version
    decision = decide(current, precondition)
    assert decision.applies is expected
    assert decision.current_version == (current.version if current else None)


@pytest.mark.parametrize("bad", [0, -1, None, True, 1.0, "1"])
def test_matches_needs_a_positive_int_version(bad):
    with pytest.raises(ValueError):
        Precondition.matches(bad)


def test_versionless_preconditions_take_no_version():
    with pytest.raises(ValueError):
        Precondition(PreconditionKind.NONE, 3)
    assert Precondition.none() == Precondition(PreconditionKind.NONE)
    assert str(Precondition.matches(7)) == "matches(7)"


@pytest.mark.parametrize("key", ["a", "x" * MAX_KEY_LENGTH, "nodes_config", "~!#$%&'()*+,-./:;<=>?@[]^_`{|}"])
def test_valid_keys(key):
    assert validate_key(key) == key


@pytest.mark.parametrize(
    "key", ["", " ", "a b", "x" * (MAX_KEY_LENGTH + 1), "\u00e9", "\x00", "\x7f", b"bytes", 3]
)
def test_invalid_keys(key):
    with pytest.raises(InvalidKey):
        validate_key(key)
