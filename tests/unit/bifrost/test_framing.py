import pytest

from bifrost.net.framing import FrameDecoder, FrameTooLarge, encode_frame

SAMPLES = [b"", b"a", b"hello world", bytes(range(256)) * 40]


def stream() -> bytes:
    return b"".join(encode_frame(s) for s in SAMPLES)


def test_whole() -> None:
    assert FrameDecoder().receive_data(stream()) == SAMPLES


def test_split_at_every_byte() -> None:
    data = stream()
    for cut in range(len(data) + 1):
        dec = FrameDecoder()
        assert dec.receive_data(data[:cut]) + dec.receive_data(data[cut:]) == SAMPLES, cut
        assert dec.buffered == 0


def test_one_byte_at_a_time() -> None:
    dec = FrameDecoder()
    out = []
    for b in stream():
        out += dec.receive_data(bytes([b]))
    assert out == SAMPLES


def test_trailing_partial_frame_stays_buffered() -> None:
    dec = FrameDecoder()
    assert dec.receive_data(stream() + encode_frame(b"next")[:-1]) == SAMPLES
    assert dec.receive_data(b"t") == [b"next"]


def test_oversized_frame_is_refused_before_buffering_it() -> None:
    dec = FrameDecoder(max_frame=10)
    with pytest.raises(FrameTooLarge, match="11 bytes"):
        dec.receive_data(encode_frame(b"x" * 11)[:6])
