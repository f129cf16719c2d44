"""The one error type of the service-protocol codec."""

from __future__ import annotations


class ProtocolError(Exception):
    """The peer broke the service protocol: the attempt must fail (and be retried).

    ``type_id`` is the frame type involved (``None`` when the fault is not tied to one frame) and
    ``offset`` the stream offset of that frame's header (``None`` outside a byte stream). Frames
    decoded whole before the fault, in the same ``receive_data`` call, are in ``frames``.
    """

    def __init__(
        self,
        message: str,
        *,
        type_id: int | None = None,
        offset: int | None = None,
        frames: list | None = None,
    ) -> None:
        where = []
        if type_id is not None:
            where.append(f"type 0x{type_id:04X}")
        if offset is not None:
            where.append(f"offset {offset}")
        super().__init__(f"{message} ({', '.join(where)})" if where else message)
        self.type_id = type_id
        self.offset = offset
        self.frames: list = frames if frames is not None else []
