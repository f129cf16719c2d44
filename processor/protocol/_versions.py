"""Service-protocol versions: which we speak, how one is chosen per attempt, and how they differ.

We speak versions 5 to 7, the range both official SDKs offer. Per attempt the runtime picks
``min(deployment max, cap)`` where cap is 6 by default, as Restate 1.7 does unless its v7
experiment is on; a deployment whose range lies wholly above the cap is refused (``None``).
The version travels as the request's content type ``application/vnd.restate.invocation.vN``,
and the SDK must answer with exactly that string.

Where the wire differs: SuspensionMessage lists awaited ids in fields 1-3 up to v6 and as a
``Future`` tree in field 4 from v7; AwaitingOn (0x0006) and ProposeRunCompletionAck (0x0007)
exist only from v7. A v7 suspension is read with the rule Restate itself uses for v6: resume
when any awaited leaf arrives (the SDK suspends again if that was not enough).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from proto.durastate.service_protocol.v1 import protocol_pb2 as pb

MIN_PROTOCOL_VERSION: Final = 5
MAX_PROTOCOL_VERSION: Final = 7
DEFAULT_MAX_PROTOCOL_VERSION: Final = 6

_CONTENT_TYPE_PREFIX: Final = "application/vnd.restate.invocation.v"


def content_type(version: int) -> str:
    """The content type (and accept) header of an invocation request at ``version``."""
    return f"{_CONTENT_TYPE_PREFIX}{version}"


def version_of_content_type(value: str | None) -> int | None:
    """The version named by an exact ``application/vnd.restate.invocation.vN``, else ``None``."""
    if value is None or not value.startswith(_CONTENT_TYPE_PREFIX):
        return None
    digits = value[len(_CONTENT_TYPE_PREFIX) :]
    if not digits.isascii() or not digits.isdigit() or digits.startswith("0"):
        return None
    return int(digits)


def accepts_range(min_version: int, max_version: int) -> bool:
    """Whether a deployment offering [min, max] can be registered: the range meets [5, 7]."""
    return min_version <= MAX_PROTOCOL_VERSION and max_version >= MIN_PROTOCOL_VERSION


def choose_version(
    deployment_min: int, deployment_max: int, *, max_version: int = DEFAULT_MAX_PROTOCOL_VERSION
) -> int | None:
    """The version to run an attempt with, or ``None`` if the deployment offers none we allow.

    ``max_version`` is the cap (6 like Restate's default, 7 to enable v7).
    """
    if not MIN_PROTOCOL_VERSION <= max_version <= MAX_PROTOCOL_VERSION:
        raise ValueError(
            f"max_version {max_version} is outside the supported range "
            f"[{MIN_PROTOCOL_VERSION}, {MAX_PROTOCOL_VERSION}]"
        )
    if deployment_min > max_version or deployment_max < MIN_PROTOCOL_VERSION:
        return None
    return min(deployment_max, max_version)


@dataclass(frozen=True, slots=True)
class Awaiting:
    """What a suspended invocation waits for: it may resume when any one of these arrives."""

    completions: frozenset[int]
    signals: frozenset[int]
    named_signals: frozenset[str]


def suspension_awaits(message: pb.SuspensionMessage, version: int) -> Awaiting:
    """Flatten a suspension of protocol ``version`` into the ids it waits on (any one resumes)."""
    if version < 7:
        return Awaiting(
            frozenset(message.waiting_completions),
            frozenset(message.waiting_signals),
            frozenset(message.waiting_named_signals),
        )
    completions: set[int] = set()
    signals: set[int] = set()
    named: set[str] = set()
    pending = [message.awaiting_on]
    while pending:
        future = pending.pop()
        completions.update(future.waiting_completions)
        signals.update(future.waiting_signals)
        named.update(future.waiting_named_signals)
        pending.extend(future.nested_futures)
    return Awaiting(frozenset(completions), frozenset(signals), frozenset(named))
