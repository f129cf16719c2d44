"""One filled-in sample of every service-protocol message, for the codec tests.

Every scalar gets a non-default value, repeated fields two items, and one member of each oneof
(the first one, and the others in further variants), so a round trip exercises every field.
"""

from __future__ import annotations

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from processor.protocol import MessageType, message_class, pb

_SCALARS = {
    FieldDescriptor.TYPE_UINT32: 4_000_000_000,
    FieldDescriptor.TYPE_UINT64: 2**63 + 5,
    FieldDescriptor.TYPE_BOOL: True,
    FieldDescriptor.TYPE_STRING: "héllo ✓",
    FieldDescriptor.TYPE_BYTES: b"\x00\xffbytes",
}


def _scalar(field: FieldDescriptor, salt: int) -> object:
    if field.type == FieldDescriptor.TYPE_ENUM:
        values = [v.number for v in field.enum_type.values if v.number]
        return values[salt % len(values)]
    value = _SCALARS[field.type]
    if isinstance(value, int) and not isinstance(value, bool):
        return value - salt
    if isinstance(value, str):
        return f"{value}{salt}"
    if isinstance(value, bytes):
        return value + bytes([salt % 256])
    return value


def fill(message: Message, variant: int = 0, depth: int = 0) -> Message:
    """Fill ``message`` in place; ``variant`` picks which oneof member is set."""
    descriptor: Descriptor = message.DESCRIPTOR
    for field in descriptor.fields:
        oneof = field.containing_oneof
        if oneof is not None:  # proto3 `optional` fields sit alone in a synthetic oneof
            members = list(oneof.fields)
            if len(members) > 1 and members[variant % len(members)] is not field:
                continue
        if field.message_type is not None:
            if depth >= 2 and field.message_type.name == "Future":
                continue
            if field.is_repeated:
                for i in range(2):
                    fill(getattr(message, field.name).add(), variant + i, depth + 1)
            else:
                child = getattr(message, field.name)
                child.SetInParent()
                fill(child, variant, depth + 1)
        elif field.is_repeated:
            getattr(message, field.name).extend([_scalar(field, variant), _scalar(field, variant + 1)])
        else:
            setattr(message, field.name, _scalar(field, variant))
    return message


def oneof_variants(cls: type[Message]) -> int:
    return max([len(o.fields) for o in cls.DESCRIPTOR.oneofs if len(o.fields) > 1] or [1])


def samples() -> list[tuple[int, Message]]:
    """(type id, message) for every known type and every oneof variant of it."""
    out = []
    for type_id in MessageType:
        cls = message_class(type_id)
        for variant in range(oneof_variants(cls)):
            out.append((int(type_id), fill(cls(), variant)))
    return out


def empty_suspension_fields(message: pb.SuspensionMessage, version: int) -> pb.SuspensionMessage:
    """A suspension sample in the wire form of ``version`` (v5/v6 fields 1-3, v7 field 4)."""
    if version >= 7:
        message.ClearField("waiting_completions")
        message.ClearField("waiting_signals")
        message.ClearField("waiting_named_signals")
    else:
        message.ClearField("awaiting_on")
    return message
