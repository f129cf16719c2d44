from node.core import Alive, Dead, FailureDetector, Heartbeat, Tick


def test_silence_makes_a_peer_dead_and_a_new_generation_revives_it() -> None:
    fd = FailureDetector([2, 3], now_ms=0, timeout_ms=1000, suspect_ms=3000)
    assert fd.step(Heartbeat(2, 1, 500)) == []
    assert fd.step(Tick(1001)) == [Dead(3)]
    assert fd.step(Tick(1400)) == []
    assert fd.step(Tick(1501)) == [Dead(2)]
    assert fd.alive == []
    assert fd.step(Heartbeat(2, 2, 1600)) == [Alive(2, 2)]
    assert fd.is_alive(2)


def test_same_generation_stays_suspect_for_a_while() -> None:
    fd = FailureDetector([2], now_ms=0, timeout_ms=1000, suspect_ms=3000)
    fd.step(Heartbeat(2, 4, 0))
    assert fd.step(Tick(1001)) == [Dead(2)]
    # Paused process resumes with the same generation: not trusted until the suspect time passed.
    assert fd.step(Heartbeat(2, 4, 1100)) == []
    assert fd.step(Heartbeat(2, 4, 3000)) == []
    assert fd.step(Heartbeat(2, 4, 4001)) == [Alive(2, 4)]


def test_stale_generation_is_ignored() -> None:
    fd = FailureDetector([2], now_ms=0, timeout_ms=1000)
    fd.step(Heartbeat(2, 5, 0))
    assert fd.step(Heartbeat(2, 4, 900)) == []
    assert fd.step(Tick(1001)) == [Dead(2)], "a stale process's heartbeat must not keep the node alive"


def test_an_unknown_peer_is_alive_from_its_first_heartbeat() -> None:
    fd = FailureDetector([], now_ms=0)
    assert fd.step(Heartbeat(9, 1, 10)) == [Alive(9, 1)]
    assert fd.alive == [9]
