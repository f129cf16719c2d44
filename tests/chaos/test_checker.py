"""The checker on hand-made histories: a clean one passes, each broken property fails alone."""

from __future__ import annotations

from chaos.checker import Append, History, Observation, TailSample, check


def ack(payload: str, lsn: int, log_id: int = 1) -> Append:
    return Append(log_id, payload.encode(), "n1", 0.0, 0.1, lsn=lsn)


def failed(payload: str, log_id: int = 1) -> Append:
    return Append(log_id, payload.encode(), "n2", 0.0, 1.0, error="NodeUnreachable: timeout")


def obs(reader: str, entries: list[tuple[int, str]], complete: bool = True, log_id: int = 1) -> Observation:
    return Observation(
        reader, reader.split("-")[-1], log_id, tuple((n, p.encode()) for n, p in entries), complete
    )


def clean() -> History:
    log = [(1, "a"), (2, "b"), (3, "x"), (4, "c")]
    return History(
        appends=[ack("a", 1), ack("b", 2), failed("x"), failed("y"), ack("c", 4)],
        observations=[
            obs("follow-n1", log[:2], complete=False),
            obs("final-n1", log),
            obs("final-n2", log),
            obs("final-n3", log),
        ],
        tails=[TailSample("n1", 1, 0.0, 1), TailSample("n1", 1, 1.0, 3), TailSample("n1", 1, 2.0, 5)],
        final_tails={1: 5},
    )


def test_clean_history_passes() -> None:
    result = check(clean())
    assert result.ok, result.violations
    assert (result.operations, result.acked, result.indeterminate) == (5, 3, 2)
    assert (result.lost, result.divergent, result.duplicates) == (0, 0, 0)


def test_indeterminate_append_may_be_absent_or_duplicated() -> None:
    h = clean()
    # "x" failed on the client yet was stored twice (re-appended after a seal): counted, allowed.
    log = [(1, "a"), (2, "b"), (3, "x"), (4, "c"), (5, "x")]
    h.observations = [obs(f"final-n{i}", log) for i in (1, 2, 3)]
    h.final_tails = {1: 6}
    result = check(h)
    assert result.ok, result.violations
    assert result.duplicates == 1
    assert "LSNs [3, 5]" in result.duplicate_examples[0]


def test_lost_acknowledged_append_fails() -> None:
    h = clean()
    # n3's final read has another (attempted) record where "b" was acknowledged.
    h.observations[3] = obs("final-n3", [(1, "a"), (2, "y"), (3, "x"), (4, "c")])
    result = check(h)
    assert not result.ok
    assert result.lost == 1
    assert any(v.kind == "lost" and "'b' at LSN 2" in v.message for v in result.violations)


def test_missing_record_in_a_final_read_is_lost() -> None:
    h = clean()
    h.observations[2] = obs("final-n2", [(1, "a"), (2, "b"), (3, "x")])  # stops short
    result = check(h)
    assert result.lost == 1 and result.sequence_mismatches == 1
    assert not result.ok


def test_divergent_readers_fail() -> None:
    h = clean()
    # A follower saw "z" at LSN 2 where every final read has "b".
    h.appends.append(failed("z"))
    h.observations[0] = obs("follow-n1", [(1, "a"), (2, "z")], complete=False)
    result = check(h)
    assert result.divergent == 1 and result.lost == 0
    assert not result.ok
    assert any(v.kind == "divergent" and "LSN 2" in v.message for v in result.violations)


def test_two_acks_for_one_lsn_are_divergent() -> None:
    h = clean()
    h.appends.append(ack("d", 4))
    result = check(h)
    assert result.divergent == 1 and not result.ok


def test_reader_skipping_an_lsn_fails() -> None:
    h = clean()
    h.observations[0] = obs("follow-n1", [(1, "a"), (3, "x")], complete=False)
    result = check(h)
    assert result.sequence_mismatches == 1 and not result.ok
    assert "skipped" in result.violations[0].message


def test_phantom_record_fails() -> None:
    h = clean()
    log = [(1, "a"), (2, "b"), (3, "never-sent"), (4, "c")]
    h.observations = [obs(f"final-n{i}", log) for i in (1, 2, 3)]
    result = check(h)
    assert result.phantoms == 1 and not result.ok


def test_tail_regression_fails() -> None:
    h = clean()
    h.tails.append(TailSample("n1", 1, 3.0, 2))
    result = check(h)
    assert result.tail_regressions == 1 and not result.ok
    # Other nodes' tails may lag: only a node going back on its own word counts.
    h2 = clean()
    h2.tails.append(TailSample("n2", 1, 3.0, 2))
    assert check(h2).ok


def test_read_past_final_tail_fails() -> None:
    h = clean()
    h.observations[0] = obs("follow-n1", [(1, "a"), (2, "b"), (3, "x"), (4, "c"), (5, "y")], complete=False)
    result = check(h)
    assert result.reads_past_tail == 1 and not result.ok


def test_many_violations_are_counted_beyond_the_listed_ones() -> None:
    h = History(
        appends=[ack(f"p{i}", i) for i in range(1, 101)],
        observations=[obs("final-n1", [])],
        final_tails={1: 101},
    )
    result = check(h)
    assert result.lost == 100
    assert len([v for v in result.violations if v.kind == "lost"]) == 20
    assert result.unlisted["lost"] == 80
