"""What the runtime checks before it journals a command the SDK sent (restate-protocol.md §3.6).

The real server checks these in its invoker, not in its state machine, and a failed check is
an attempt error like any other: retried by the retry policy, never a terminal failure of the
invocation (Restate's ``CommandPreconditionError``, reported as an internal error, 500):

    state commands (get/set/clear/keys)    the target must be keyed (object or workflow)
    state writes (set/clear/clear all)     the handler must not be shared
    promise commands                       the target must be a workflow
    call and one-way call                  the target must exist in the latest schema, take a
                                           key only if it is keyed, and an idempotency key
                                           must not be empty
    signal, attach, output, awakeable      the ids they name must parse

Call targets are resolved here too, through the injected ``CallResolver`` (the shell's view of
the latest schema), so that the proposed command carries everything applying it needs.
"""

from __future__ import annotations

from typing import Any, Final, Protocol

from processor.core import CallTarget, ServiceType, Target
from processor.ids import AwakeableId, BadId, InvocationId
from processor.protocol import MessageType

T = MessageType
_STATE_READS: Final = frozenset(
    {
        T.GET_LAZY_STATE_COMMAND,
        T.GET_LAZY_STATE_KEYS_COMMAND,
        T.GET_EAGER_STATE_COMMAND,
        T.GET_EAGER_STATE_KEYS_COMMAND,
    }
)
_STATE_WRITES: Final = frozenset({T.SET_STATE_COMMAND, T.CLEAR_STATE_COMMAND, T.CLEAR_ALL_STATE_COMMAND})
_PROMISE_COMMANDS: Final = frozenset(
    {T.GET_PROMISE_COMMAND, T.PEEK_PROMISE_COMMAND, T.COMPLETE_PROMISE_COMMAND}
)
_CALLS: Final = frozenset({T.CALL_COMMAND, T.ONE_WAY_CALL_COMMAND})

NO_STATE: Final = "unsupported entry type, this service type doesn't have state access"
NO_STATE_WRITES: Final = "unsupported entry type, this handler type cannot write state"
NO_PROMISES: Final = "unsupported entry type, only Workflow services support it"
EMPTY_IDEMPOTENCY_KEY: Final = "the idempotency key provided in the request is empty"


class CallResolver(Protocol):
    """Resolve a call's target against the latest schema: a ``CallTarget``, or why it cannot be
    called (e.g. "the service handler Foo/bar was not found"). ``key`` is the command's key
    field ("" when none was given); ``has_idempotency_key`` decides the retentions."""

    def __call__(
        self, service: str, handler: str, key: str, has_idempotency_key: bool
    ) -> CallTarget | str: ...


def no_calls(service: str, handler: str, key: str, has_idempotency_key: bool) -> CallTarget | str:
    """A resolver that knows no service (for attempts whose handlers make no calls)."""
    return f"the service handler {service}/{handler} was not found"


def check_command(
    target: Target, type_id: int, message: Any, resolve: CallResolver
) -> tuple[CallTarget | None, str | None]:
    """(the resolved call target, if a call; why the command is refused, or None)."""
    if type_id in _STATE_READS or type_id in _STATE_WRITES:
        if target.service_type is ServiceType.SERVICE:
            return None, NO_STATE
        if type_id in _STATE_WRITES and not target.exclusive:
            return None, NO_STATE_WRITES
        return None, None
    if type_id in _PROMISE_COMMANDS:
        return None, None if target.service_type is ServiceType.WORKFLOW else NO_PROMISES
    if type_id in _CALLS:
        return _call(message, resolve)
    try:
        if type_id == T.SEND_SIGNAL_COMMAND:
            InvocationId.parse(message.target_invocation_id)
        elif type_id in (T.ATTACH_INVOCATION_COMMAND, T.GET_INVOCATION_OUTPUT_COMMAND):
            if message.WhichOneof("target") == "invocation_id":
                InvocationId.parse(message.invocation_id)
        elif type_id == T.COMPLETE_AWAKEABLE_COMMAND:
            AwakeableId.parse(message.awakeable_id)
    except BadId as error:
        return None, str(error)
    return None, None


def _call(message: Any, resolve: CallResolver) -> tuple[CallTarget | None, str | None]:
    has_key = message.HasField("idempotency_key")
    if has_key and not message.idempotency_key:
        return None, EMPTY_IDEMPOTENCY_KEY
    resolved = resolve(message.service_name, message.handler_name, message.key, has_key)
    if isinstance(resolved, str):
        return None, resolved
    return resolved, None
