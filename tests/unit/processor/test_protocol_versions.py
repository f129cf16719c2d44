"""Protocol version negotiation and the v6/v7 reading of suspensions."""

from __future__ import annotations

import pytest

from processor.protocol import (
    DEFAULT_MAX_PROTOCOL_VERSION,
    Awaiting,
    accepts_range,
    choose_version,
    content_type,
    pb,
    suspension_awaits,
    version_of_content_type,
)


def test_content_types():
    assert content_type(6) == "application/vnd.restate.invocation.v6"
    for version in range(1, 12):
        assert version_of_content_type(content_type(version)) == version
    for bad in (
        None,
        "",
        "application/vnd.restate.invocation.v",
        "application/vnd.restate.invocation.v06",
        "application/vnd.restate.invocation.v6 ",
        "application/vnd.restate.invocation.v6; charset=x",
        "application/vnd.restate.invocation.v٦",  # a non-ASCII digit
        "application/json",
    ):
        assert version_of_content_type(bad) is None, bad


@pytest.mark.parametrize(
    ("deployment", "cap", "chosen"),
    [
        ((5, 7), 6, 6),  # what the official server does with both SDKs
        ((5, 7), 7, 7),  # with its v7 experiment on
        ((5, 5), 6, 5),
        ((5, 6), 7, 6),
        ((1, 7), 6, 6),
        ((7, 9), 6, None),  # only versions above the cap
        ((7, 9), 7, 7),
        ((1, 4), 7, None),  # only versions we do not speak
        ((8, 9), 7, None),
    ],
)
def test_choose_version(deployment: tuple[int, int], cap: int, chosen: int | None):
    assert choose_version(*deployment, max_version=cap) == chosen


def test_default_cap_is_v6_like_the_real_server():
    assert DEFAULT_MAX_PROTOCOL_VERSION == 6
    assert choose_version(5, 7) == 6


@pytest.mark.parametrize("cap", [4, 8])
def test_cap_outside_what_we_speak(cap: int):
    with pytest.raises(ValueError, match="outside the supported range"):
        choose_version(5, 7, max_version=cap)


def test_accepts_range_for_discovery():
    assert accepts_range(5, 7) and accepts_range(1, 5) and accepts_range(7, 100)
    assert not accepts_range(1, 4) and not accepts_range(8, 9)


def test_v6_suspension_reads_fields_1_to_3():
    message = pb.SuspensionMessage(
        waiting_completions=[1, 2], waiting_signals=[17, 1], waiting_named_signals=["a"]
    )
    assert suspension_awaits(message, 6) == Awaiting(frozenset({1, 2}), frozenset({17, 1}), frozenset({"a"}))


def test_v7_suspension_flattens_the_tree_to_its_leaves():
    # The captured v7 suspension of §4.5 (a run and an awakeable raced, plus cancel).
    tree = pb.Future(
        waiting_signals=[1],
        nested_futures=[
            pb.Future(waiting_completions=[1], waiting_signals=[17], combinator_type=pb.FIRST_COMPLETED)
        ],
        combinator_type=pb.FIRST_COMPLETED,
    )
    deep = pb.Future(nested_futures=[pb.Future(nested_futures=[pb.Future(waiting_named_signals=["n"])])])
    tree.nested_futures.append(deep)
    awaited = suspension_awaits(pb.SuspensionMessage(awaiting_on=tree), 7)
    assert awaited == Awaiting(frozenset({1}), frozenset({1, 17}), frozenset({"n"}))
