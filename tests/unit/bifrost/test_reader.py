"""Read-stream core: rotation on holes and failures, never past the known global tail."""

from __future__ import annotations

import random

from bifrost.core import (
    Cached,
    Consumed,
    Deliver,
    GenerationalNodeId,
    GetRecords,
    ReaderConfig,
    ReaderState,
    ReadStream,
    RequestHeader,
    Send,
    SetTail,
    Store,
    Tick,
)
from tests.unit.bifrost.loopback import Loopback

SEQ = GenerationalNodeId(1, 1)
LID = 9


def put(net: Loopback, node: int, first: int, n: int, gt: int) -> None:
    payloads = tuple(f"r{o}".encode() for o in range(first, first + n))
    net.deliver(Send(node, 0, Store(RequestHeader(LID, gt), first, SEQ, payloads)))


def run(net: Loopback, rs: ReadStream, steps: int = 500) -> list[int]:
    got: list[int] = []
    inbox: list = [Tick(net.now)]
    for _ in range(steps):
        if not inbox:
            net.now += 50
            inbox.append(Tick(net.now))
        for o in rs.step(inbox.pop(0)):
            if isinstance(o, Deliver):
                assert o.payload == f"r{o.offset}".encode()
                got.append(o.offset)
            elif isinstance(o, Send):
                inbox.extend(net.deliver(o))
        if rs.state is ReaderState.DONE:
            break
    return got


def test_reader_rotates_past_a_hole_and_stops_at_the_tail() -> None:
    net = Loopback([1, 2])
    put(net, 1, 1, 2, gt=1)  # N1: 1,2 then (jumping over 3..4) 5,6
    put(net, 1, 5, 2, gt=5)
    put(net, 2, 1, 6, gt=1)  # N2 has everything 1..6; global tail known: 5
    put(net, 2, 7, 1, gt=5)
    rs = ReadStream(LID, (1, 2), random.Random(0), preferred=1)
    got = run(net, rs, steps=60)
    assert got == [1, 2, 3, 4], "offsets >= the known global tail (5) are never delivered"
    assert rs.known_tail == 5
    rs.step(SetTail(8, final=True))
    got += run(net, rs)
    assert got == list(range(1, 8))
    assert rs.state is ReaderState.DONE


def test_reader_survives_an_isolated_preferred_server() -> None:
    net = Loopback([1, 2, 3])
    for n in (1, 2, 3):
        put(net, n, 1, 10, gt=1)
    net.isolate(1)
    rs = ReadStream(LID, (1, 2, 3), random.Random(3), preferred=1)
    rs.step(SetTail(11, final=True))
    assert run(net, rs) == list(range(1, 11))


def test_a_stalled_consumer_stops_the_reading() -> None:
    """Read-ahead is bounded by credit: with 1,000 committed records and a consumer that took
    none, the stream delivers at most max_unconsumed (here three full requests of 16: the 2
    records of credit left are not worth a request) and asks for nothing more until credit
    returns."""
    net = Loopback([1])
    put(net, 1, 1, 1000, gt=1001)
    rs = ReadStream(LID, (1,), random.Random(1), ReaderConfig(max_unconsumed=50, batch_records=16))
    rs.step(SetTail(1001))
    got = run(net, rs, steps=300)
    assert got == list(range(1, 49))
    sends: list = []
    for _ in range(20):
        net.now += 1000
        sends += [
            o for o in rs.step(Tick(net.now)) if isinstance(o, Send) and isinstance(o.message, GetRecords)
        ]
    assert sends == [], "no read while the consumer is behind"
    rs.step(Consumed(48))
    assert run(net, rs, steps=300)[:10] == list(range(49, 59))


def test_cached_records_are_delivered_without_asking_a_log_server() -> None:
    """The sequencer's record cache hands the stream committed records that no log-server has
    stored yet: they are delivered at once, with the tail they came with, and nothing is asked."""
    net = Loopback([1, 2])
    rs = ReadStream(LID, (1, 2), random.Random(0), preferred=1)
    run(net, rs, steps=5)  # caught up at tail 1: an idle poll at most
    out = rs.step(Cached(1, (b"r1", b"r2", b"r3"), tail=4))
    assert [o.offset for o in out if isinstance(o, Deliver)] == [1, 2, 3]
    assert not [o for o in out if isinstance(o, Send) and isinstance(o.message, GetRecords)]
    assert rs.known_tail == 4 and rs.next_offset == 4


def test_cached_records_never_pass_the_tail_the_credit_or_a_gap() -> None:
    rs = ReadStream(LID, (1,), random.Random(0), ReaderConfig(max_unconsumed=2))
    # Records past the committed tail are not delivered, whatever the cache holds.
    out = rs.step(Cached(1, (b"r1", b"r2", b"r3"), tail=2))
    assert [o.offset for o in out if isinstance(o, Deliver)] == [1]
    # Starting past the stream's next offset (a gap before them): nothing; the log-servers
    # fill the gap first.
    assert not [o for o in rs.step(Cached(3, (b"r3",), tail=4)) if isinstance(o, Deliver)]
    # Overlapping what was delivered: only the new ones, within the consumer's credit (2).
    out = rs.step(Cached(1, (b"r1", b"r2", b"r3", b"r4"), tail=5))
    assert [o.offset for o in out if isinstance(o, Deliver)] == [2]
    rs.step(Consumed(2))
    out = rs.step(Cached(3, (b"r3", b"r4"), tail=5))
    assert [o.offset for o in out if isinstance(o, Deliver)] == [3, 4]


def test_a_reply_for_records_already_delivered_from_the_cache_is_skipped() -> None:
    net = Loopback([1])
    put(net, 1, 1, 4, gt=5)
    rs = ReadStream(LID, (1,), random.Random(0))
    sends = [o for o in rs.step(SetTail(5)) if isinstance(o, Send)]
    assert len(sends) == 1 and isinstance(sends[0].message, GetRecords)
    assert [o.offset for o in rs.step(Cached(1, (b"r1", b"r2"), tail=5)) if isinstance(o, Deliver)] == [1, 2]
    (reply,) = net.deliver(sends[0])
    got = [o.offset for o in rs.step(reply) if isinstance(o, Deliver)]
    assert got == [3, 4], "1 and 2 came from the cache: not delivered twice"


def test_a_consumer_catching_up_gets_full_requests_not_one_record_each() -> None:
    """With the read-ahead window full, credit returning one record at a time does not send a
    request per record: the stream waits for a whole batch's worth."""
    net = Loopback([1])
    put(net, 1, 1, 1000, gt=1001)
    config = ReaderConfig(max_unconsumed=64, batch_records=16)
    rs = ReadStream(LID, (1,), random.Random(1), config)
    rs.step(SetTail(1001))
    assert run(net, rs, steps=300) == list(range(1, 65))
    sizes: list[int] = []
    for _ in range(64):
        for o in rs.step(Consumed(1)):
            if isinstance(o, Send) and isinstance(o.message, GetRecords):
                sizes.append(o.message.to_offset - o.message.from_offset + 1)
                for reply in net.deliver(o):
                    rs.step(reply)
    assert sizes and all(n == 16 for n in sizes), sizes
