"""Frame type ids <-> protobuf message classes: the one table of the service protocol.

Type id ranges (restate-protocol.md §3.2): 0x0000-0x03FF control, 0x0400-0x7FFF commands,
0x8000-0xFBFF notifications, 0xFC00-0xFFFF custom entries. A notification's id is 0x8000 plus the
low bits of its command's id (signals use 0xFBFF). Custom entries are opaque: the runtime stores
and replays their bytes without parsing them.

Each known type records who may send it (the runtime ``R``, the SDK ``S``), the first protocol
version that has it, and whether its frame may carry REQUESTED_ACK (commands, run proposals and
custom entries may; Restate's header codec only reads the flag for those).
"""

from __future__ import annotations

import enum
from typing import Final, NamedTuple

from google.protobuf.message import Message

from proto.durastate.service_protocol.v1 import protocol_pb2 as pb

COMMAND_FIRST: Final = 0x0400
NOTIFICATION_FIRST: Final = 0x8000
CUSTOM_FIRST: Final = 0xFC00
SIGNAL_NOTIFICATION: Final = 0xFBFF


class MessageType(enum.IntEnum):
    START = 0x0000
    SUSPENSION = 0x0001
    ERROR = 0x0002
    END = 0x0003
    COMMAND_ACK = 0x0004
    PROPOSE_RUN_COMPLETION = 0x0005
    AWAITING_ON = 0x0006
    PROPOSE_RUN_COMPLETION_ACK = 0x0007

    INPUT_COMMAND = 0x0400
    OUTPUT_COMMAND = 0x0401
    GET_LAZY_STATE_COMMAND = 0x0402
    SET_STATE_COMMAND = 0x0403
    CLEAR_STATE_COMMAND = 0x0404
    CLEAR_ALL_STATE_COMMAND = 0x0405
    GET_LAZY_STATE_KEYS_COMMAND = 0x0406
    GET_EAGER_STATE_COMMAND = 0x0407
    GET_EAGER_STATE_KEYS_COMMAND = 0x0408
    GET_PROMISE_COMMAND = 0x0409
    PEEK_PROMISE_COMMAND = 0x040A
    COMPLETE_PROMISE_COMMAND = 0x040B
    SLEEP_COMMAND = 0x040C
    CALL_COMMAND = 0x040D
    ONE_WAY_CALL_COMMAND = 0x040E
    SEND_SIGNAL_COMMAND = 0x0410
    RUN_COMMAND = 0x0411
    ATTACH_INVOCATION_COMMAND = 0x0412
    GET_INVOCATION_OUTPUT_COMMAND = 0x0413
    COMPLETE_AWAKEABLE_COMMAND = 0x0414

    GET_LAZY_STATE_COMPLETION = 0x8002
    GET_LAZY_STATE_KEYS_COMPLETION = 0x8006
    GET_PROMISE_COMPLETION = 0x8009
    PEEK_PROMISE_COMPLETION = 0x800A
    COMPLETE_PROMISE_COMPLETION = 0x800B
    SLEEP_COMPLETION = 0x800C
    CALL_COMPLETION = 0x800D
    CALL_INVOCATION_ID_COMPLETION = 0x800E
    RUN_COMPLETION = 0x8011
    ATTACH_INVOCATION_COMPLETION = 0x8012
    GET_INVOCATION_OUTPUT_COMPLETION = 0x8013
    SIGNAL_NOTIFICATION = SIGNAL_NOTIFICATION


class Spec(NamedTuple):
    type_id: int
    cls: type[Message]
    senders: str  # "R", "S" or "RS"
    since: int  # first protocol version with this type
    allows_ack: bool


T = MessageType
_C, _N = "RS", "R"  # commands travel both ways (SDK -> runtime, and back on replay)
SPECS: Final[tuple[Spec, ...]] = (
    Spec(T.START, pb.StartMessage, "R", 5, False),
    Spec(T.SUSPENSION, pb.SuspensionMessage, "S", 5, False),
    Spec(T.ERROR, pb.ErrorMessage, "S", 5, False),
    Spec(T.END, pb.EndMessage, "S", 5, False),
    Spec(T.COMMAND_ACK, pb.CommandAckMessage, "R", 5, False),
    Spec(T.PROPOSE_RUN_COMPLETION, pb.ProposeRunCompletionMessage, "S", 5, True),
    Spec(T.AWAITING_ON, pb.AwaitingOnMessage, "S", 7, False),
    Spec(T.PROPOSE_RUN_COMPLETION_ACK, pb.ProposeRunCompletionAckMessage, "R", 7, False),
    # The input command is written by the runtime only, never by the SDK.
    Spec(T.INPUT_COMMAND, pb.InputCommandMessage, "R", 5, True),
    Spec(T.OUTPUT_COMMAND, pb.OutputCommandMessage, _C, 5, True),
    Spec(T.GET_LAZY_STATE_COMMAND, pb.GetLazyStateCommandMessage, _C, 5, True),
    Spec(T.SET_STATE_COMMAND, pb.SetStateCommandMessage, _C, 5, True),
    Spec(T.CLEAR_STATE_COMMAND, pb.ClearStateCommandMessage, _C, 5, True),
    Spec(T.CLEAR_ALL_STATE_COMMAND, pb.ClearAllStateCommandMessage, _C, 5, True),
    Spec(T.GET_LAZY_STATE_KEYS_COMMAND, pb.GetLazyStateKeysCommandMessage, _C, 5, True),
    Spec(T.GET_EAGER_STATE_COMMAND, pb.GetEagerStateCommandMessage, _C, 5, True),
    Spec(T.GET_EAGER_STATE_KEYS_COMMAND, pb.GetEagerStateKeysCommandMessage, _C, 5, True),
    Spec(T.GET_PROMISE_COMMAND, pb.GetPromiseCommandMessage, _C, 5, True),
    Spec(T.PEEK_PROMISE_COMMAND, pb.PeekPromiseCommandMessage, _C, 5, True),
    Spec(T.COMPLETE_PROMISE_COMMAND, pb.CompletePromiseCommandMessage, _C, 5, True),
    Spec(T.SLEEP_COMMAND, pb.SleepCommandMessage, _C, 5, True),
    Spec(T.CALL_COMMAND, pb.CallCommandMessage, _C, 5, True),
    Spec(T.ONE_WAY_CALL_COMMAND, pb.OneWayCallCommandMessage, _C, 5, True),
    Spec(T.SEND_SIGNAL_COMMAND, pb.SendSignalCommandMessage, _C, 5, True),
    Spec(T.RUN_COMMAND, pb.RunCommandMessage, _C, 5, True),
    Spec(T.ATTACH_INVOCATION_COMMAND, pb.AttachInvocationCommandMessage, _C, 5, True),
    Spec(T.GET_INVOCATION_OUTPUT_COMMAND, pb.GetInvocationOutputCommandMessage, _C, 5, True),
    Spec(T.COMPLETE_AWAKEABLE_COMMAND, pb.CompleteAwakeableCommandMessage, _C, 5, True),
    Spec(T.GET_LAZY_STATE_COMPLETION, pb.GetLazyStateCompletionNotificationMessage, _N, 5, False),
    Spec(T.GET_LAZY_STATE_KEYS_COMPLETION, pb.GetLazyStateKeysCompletionNotificationMessage, _N, 5, False),
    Spec(T.GET_PROMISE_COMPLETION, pb.GetPromiseCompletionNotificationMessage, _N, 5, False),
    Spec(T.PEEK_PROMISE_COMPLETION, pb.PeekPromiseCompletionNotificationMessage, _N, 5, False),
    Spec(T.COMPLETE_PROMISE_COMPLETION, pb.CompletePromiseCompletionNotificationMessage, _N, 5, False),
    Spec(T.SLEEP_COMPLETION, pb.SleepCompletionNotificationMessage, _N, 5, False),
    Spec(T.CALL_COMPLETION, pb.CallCompletionNotificationMessage, _N, 5, False),
    Spec(T.CALL_INVOCATION_ID_COMPLETION, pb.CallInvocationIdCompletionNotificationMessage, _N, 5, False),
    Spec(T.RUN_COMPLETION, pb.RunCompletionNotificationMessage, _N, 5, False),
    Spec(T.ATTACH_INVOCATION_COMPLETION, pb.AttachInvocationCompletionNotificationMessage, _N, 5, False),
    Spec(
        T.GET_INVOCATION_OUTPUT_COMPLETION, pb.GetInvocationOutputCompletionNotificationMessage, _N, 5, False
    ),
    Spec(T.SIGNAL_NOTIFICATION, pb.SignalNotificationMessage, _N, 5, False),
)

BY_TYPE: Final[dict[int, Spec]] = {s.type_id: s for s in SPECS}
TYPE_OF_CLASS: Final[dict[type[Message], int]] = {s.cls: s.type_id for s in SPECS}


def is_custom(type_id: int) -> bool:
    """A custom entry: opaque to the runtime, stored and replayed byte for byte."""
    return type_id >= CUSTOM_FIRST


def is_command(type_id: int) -> bool:
    return COMMAND_FIRST <= type_id < NOTIFICATION_FIRST


def is_notification(type_id: int) -> bool:
    return NOTIFICATION_FIRST <= type_id < CUSTOM_FIRST


def is_journal_entry(type_id: int) -> bool:
    """Commands, notifications and custom entries go in the journal; control messages never do."""
    return type_id >= COMMAND_FIRST


def type_name(type_id: int) -> str:
    spec = BY_TYPE.get(type_id)
    if spec is not None:
        return spec.cls.DESCRIPTOR.name
    return f"custom entry 0x{type_id:04X}" if is_custom(type_id) else f"unknown type 0x{type_id:04X}"


def message_class(type_id: int) -> type[Message]:
    """The protobuf class of a known type id; ``KeyError`` for custom or unknown ids."""
    return BY_TYPE[type_id].cls


def type_id_of(message: Message) -> int:
    """The frame type id of a protobuf message instance; ``KeyError`` if it is not a frame message."""
    return TYPE_OF_CLASS[type(message)]
