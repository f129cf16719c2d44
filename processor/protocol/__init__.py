"""Restate's service protocol, sans I/O: frames, message types, versions, the endpoint manifest.

The invoker feeds the bytes of an invocation stream to a ``Decoder`` and gets ``Frame``s back;
it sends with ``encode`` (a message) or ``encode_raw`` (a stored journal entry, byte for byte).
``pb`` is the generated protobuf module with every message of protocol v5-v7. Version choice
per attempt and the v6/v7 differences live in ``choose_version``, ``content_type`` and
``suspension_awaits``; the discovery manifest is parsed by ``processor.protocol.manifest``.
Nothing here does I/O, reads a clock or draws a random number.
"""

from processor.protocol._codec import (
    DEFAULT_MAX_FRAME_SIZE,
    HEADER_SIZE,
    REQUESTED_ACK,
    Decoder,
    Frame,
    Sender,
    decode_payload,
    encode,
    encode_raw,
)
from processor.protocol._errors import ProtocolError
from processor.protocol._registry import (
    MessageType,
    is_command,
    is_custom,
    is_journal_entry,
    is_notification,
    message_class,
    type_id_of,
    type_name,
)
from processor.protocol._versions import (
    DEFAULT_MAX_PROTOCOL_VERSION,
    MAX_PROTOCOL_VERSION,
    MIN_PROTOCOL_VERSION,
    Awaiting,
    accepts_range,
    choose_version,
    content_type,
    suspension_awaits,
    version_of_content_type,
)
from proto.durastate.service_protocol.v1 import protocol_pb2 as pb

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "DEFAULT_MAX_PROTOCOL_VERSION",
    "HEADER_SIZE",
    "MAX_PROTOCOL_VERSION",
    "MIN_PROTOCOL_VERSION",
    "REQUESTED_ACK",
    "Awaiting",
    "Decoder",
    "Frame",
    "MessageType",
    "ProtocolError",
    "Sender",
    "accepts_range",
    "choose_version",
    "content_type",
    "decode_payload",
    "encode",
    "encode_raw",
    "is_command",
    "is_custom",
    "is_journal_entry",
    "is_notification",
    "message_class",
    "pb",
    "suspension_awaits",
    "type_id_of",
    "type_name",
    "version_of_content_type",
]
