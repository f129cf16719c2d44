"""Text renderings of an attempt's outputs, one line each, for golden transcripts and logs.

send StartMessage{debug_id: "inv_1..." known_entries: 1 ...}   (one line per frame)
propose command #1 RunCommand{result_completion_id: 1 name: "x"}
propose run-completion 1 value=b'"a"'
propose suspended completions=(1) signals=(1)
close-request
timer at=60000
ended SUSPENDED
"""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf import text_format
from google.protobuf.message import Message

from processor.core import End, Fail, InvokerEffect, JournalCommand, RunCompletion, Suspended
from processor.invoker.core._events import (
    AttemptEnded,
    CloseRequest,
    Output,
    ProposeEffect,
    SendFrames,
    SetTimer,
)
from processor.protocol import Decoder, MessageType, Sender, decode_payload, type_name


def describe_message(type_id: int, message: Message | None) -> str:
    name = type_name(type_id)
    if message is None:
        return f"{name}{{}}"
    if type_id == MessageType.START:
        message = type(message).FromString(message.SerializeToString())
        message.ClearField("id")  # 24 raw bytes; the debug id names the invocation
    return f"{name.removesuffix('Message')}{{{text_format.MessageToString(message, as_one_line=True)}}}"


def describe_entry(type_id: int, raw: bytes) -> str:
    return describe_message(type_id, decode_payload(type_id, raw))


def describe_effect(effect: InvokerEffect) -> str:
    match effect:
        case JournalCommand():
            line = f"command #{effect.command_index} {describe_entry(effect.type_id, effect.raw)}"
            if effect.call is not None:
                line += f" -> {effect.call.target} on {effect.call.deployment_id}"
            return line
        case RunCompletion():
            if effect.failure is not None:
                return f"run-completion {effect.completion_id} failure=[{effect.failure.code}] {effect.failure.message}"
            return f"run-completion {effect.completion_id} value={effect.value!r}"
        case Suspended():
            a = effect.awaiting
            parts = [f"completions={a.completion_ids}", f"signals={a.signal_ids}"]
            if a.signal_names:
                parts.append(f"names={a.signal_names}")
            return "suspended " + " ".join(p.replace(",)", ")") for p in parts)
        case End():
            return "end"
        case Fail():
            return f"fail [{effect.failure.code}] {effect.failure.message}"
    raise TypeError(f"not an invoker effect: {effect!r}")


def describe(outputs: Iterable[Output]) -> str:
    """One line per frame sent and per other output."""
    lines: list[str] = []
    for out in outputs:
        match out:
            case SendFrames():
                for frame in Decoder(sender=Sender.RUNTIME).receive_data(out.data):
                    lines.append("send " + describe_message(frame.type_id, frame.message))
            case ProposeEffect():
                lines.append("propose " + describe_effect(out.effect))
            case CloseRequest():
                lines.append("close-request")
            case SetTimer():
                lines.append(f"timer at={out.at_ms}")
            case AttemptEnded():
                line = f"ended {out.kind.value}"
                if out.retry_after_ms is not None:
                    line += f" retry_after={out.retry_after_ms}"
                if not out.counts:
                    line += " (not counted)"
                if out.error is not None:
                    line += f" {out.error}"
                lines.append(line)
    return "\n".join(lines)
