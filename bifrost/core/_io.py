"""Inputs and outputs shared by the cores that talk to log-servers (sequencer, tasks, reader).

They address log-servers by plain node id and match replies by their own request ids; the
shell routes a `Send` to that node's log-server and feeds its reply back as `Response`.
Time enters only as `Tick(now_ms)`; a core asks to be ticked again with `SetTimer(at_ms)`
(the latest SetTimer replaces earlier ones; extra ticks are harmless).
"""

from __future__ import annotations

from dataclasses import dataclass

from ._messages import ReplyMessage, RequestMessage, describe_message
from ._types import NodeId


@dataclass(frozen=True, slots=True)
class Tick:
    now_ms: int


@dataclass(frozen=True, slots=True)
class Response:
    from_node: NodeId
    request_id: int
    message: ReplyMessage


@dataclass(frozen=True, slots=True)
class NodeDead:
    """Failure-detector hint: stop sending to this node until NodeAlive."""

    node: NodeId


@dataclass(frozen=True, slots=True)
class NodeAlive:
    node: NodeId


@dataclass(frozen=True, slots=True)
class Send:
    to: NodeId
    request_id: int
    message: RequestMessage


@dataclass(frozen=True, slots=True)
class SetTimer:
    at_ms: int


def describe_io(x: Tick | Response | NodeDead | NodeAlive | Send | SetTimer) -> str:
    match x:
        case Send(to=to, request_id=rid, message=m):
            return f"send N{to} rid={rid}: {describe_message(m)}"
        case Response(from_node=n, request_id=rid, message=m):
            return f"response N{n} rid={rid}: {describe_message(m)}"
        case SetTimer(at_ms=t):
            return f"set-timer {t}"
        case Tick(now_ms=t):
            return f"tick {t}"
        case NodeDead(node=n):
            return f"node-dead N{n}"
        case NodeAlive(node=n):
            return f"node-alive N{n}"
    raise TypeError(x)
