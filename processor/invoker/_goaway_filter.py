"""Takes GOAWAY frames out of the server's HTTP/2 byte stream before the ``h2`` library sees them.

``h2`` moves a connection to CLOSED as soon as it receives a GOAWAY and then refuses every
further frame (python-hyper/h2 issue 1181), so streams at or below the GOAWAY's last stream id
could never finish, although RFC 9113 §6.8 lets them. The client session therefore handles
GOAWAY itself and feeds ``h2`` everything else. The server-to-client direction of an h2c
connection is frames only (no preface), so the split is a walk over 9-byte frame headers.
"""

from __future__ import annotations

from dataclasses import dataclass

FRAME_HEADER_BYTES = 9
GOAWAY_TYPE = 0x7
GOAWAY_MIN_PAYLOAD = 8


@dataclass(frozen=True, slots=True)
class GoAwayFrame:
    last_stream_id: int
    error_code: int
    debug_data: bytes

    @classmethod
    def parse(cls, payload: bytes) -> GoAwayFrame:
        return cls(
            last_stream_id=int.from_bytes(payload[0:4], "big") & 0x7FFFFFFF,
            error_code=int.from_bytes(payload[4:8], "big"),
            debug_data=bytes(payload[8:]),
        )


Segment = memoryview | GoAwayFrame


class GoAwayFilter:
    """``feed(bytes) -> [bytes-for-h2 | GoAwayFrame, ...]`` in wire order.

    An incomplete frame header at the end of a chunk is withheld until the next chunk (its type
    is not known yet); the body of a GOAWAY is collected across chunks. A GOAWAY too short to be
    valid is passed through, so ``h2`` reports the protocol error.
    """

    def __init__(self) -> None:
        self._withheld = b""
        self._remaining = 0
        self._goaway: bytearray | None = None

    def feed(self, data: bytes) -> list[Segment]:
        if self._withheld:
            data = self._withheld + data
            self._withheld = b""
        view = memoryview(data)
        size = len(view)
        out: list[Segment] = []
        pos = 0
        start = 0  # first byte of the pass-through run being built
        while pos < size:
            if self._remaining:
                take = min(self._remaining, size - pos)
                self._remaining -= take
                if self._goaway is not None:
                    self._goaway += view[pos : pos + take]
                    if not self._remaining:
                        out.append(GoAwayFrame.parse(self._goaway))
                        self._goaway = None
                        start = pos + take
                pos += take
                continue
            if size - pos < FRAME_HEADER_BYTES:
                self._withheld = bytes(view[pos:])
                break
            length = int.from_bytes(view[pos : pos + 3], "big")
            if view[pos + 3] == GOAWAY_TYPE and length >= GOAWAY_MIN_PAYLOAD:
                if start < pos:
                    out.append(view[start:pos])
                self._goaway = bytearray()
            pos += FRAME_HEADER_BYTES
            self._remaining = length
        end = size - len(self._withheld)
        if self._goaway is None and start < end:
            out.append(view[start:end])
        return out
