"""What the invoker reads from the schema: call targets, retentions, and per-handler settings.

* ``resolve_call``: a Call or OneWayCall command names a service, a handler and a key; the
  latest schema turns that into a ``CallTarget`` (the target's types, the deployment its new
  invocation is pinned to, its retentions), or refuses it as Restate's invoker does (unknown
  handler, a key for a service that has none).
* ``retention``: Restate's ``compute_retention`` (restate-protocol.md §8.3).
* ``handler_settings``: the timeouts, lazy-state flag and retry policy of one handler, each
  from the handler, else its service, else the invoker's defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeVar

from metadata import schema as s
from processor.core import CallTarget, HandlerType, ServiceType, Target
from processor.invoker.core import OnMaxAttempts, RetryPolicy

SERVICE_TYPES: Final = {
    s.ServiceType.SERVICE: ServiceType.SERVICE,
    s.ServiceType.VIRTUAL_OBJECT: ServiceType.VIRTUAL_OBJECT,
    s.ServiceType.WORKFLOW: ServiceType.WORKFLOW,
}
HANDLER_TYPES: Final = {
    s.HandlerType.EXCLUSIVE: HandlerType.EXCLUSIVE,
    s.HandlerType.SHARED: HandlerType.SHARED,
    s.HandlerType.WORKFLOW: HandlerType.WORKFLOW,
}
_ON_MAX_ATTEMPTS: Final = {
    s.OnMaxAttempts.PAUSE: OnMaxAttempts.PAUSE,
    s.OnMaxAttempts.KILL: OnMaxAttempts.KILL,
}

V = TypeVar("V")


def _first(*values: V | None) -> V:
    for value in values:
        if value is not None:
            return value
    raise ValueError("no value and no default")


def retention(service: s.Service, handler: s.Handler, has_idempotency_key: bool) -> tuple[int, int]:
    """(completion, journal) retention in ms of a new invocation of ``handler``.

    A workflow's run keeps its completion for the workflow-completion retention, a request with
    an idempotency key for the idempotency retention, and either keeps its journal at most that
    long; anything else keeps both for the journal retention (0: nothing is kept)."""
    journal = _first(
        handler.journal_retention_ms, service.journal_retention_ms, s.DEFAULT_JOURNAL_RETENTION_MS
    )
    if handler.ty is s.HandlerType.WORKFLOW:
        completion = _first(
            handler.workflow_completion_retention_ms, s.DEFAULT_WORKFLOW_COMPLETION_RETENTION_MS
        )
    elif has_idempotency_key:
        completion = _first(
            handler.idempotency_retention_ms,
            service.idempotency_retention_ms,
            s.DEFAULT_IDEMPOTENCY_RETENTION_MS,
        )
    else:
        return journal, journal
    return completion, min(journal, completion)


def resolve_call(
    schema: s.Schema, service_name: str, handler_name: str, key: str, has_idempotency_key: bool
) -> CallTarget | str:
    """The target of a call made now, or why it cannot be called (Restate's wording)."""
    deployment = schema.deployment_for_service(service_name)
    service = None if deployment is None else deployment.service(service_name)
    handler = None if service is None else service.handler(handler_name)
    if deployment is None or service is None or handler is None:
        return f"the service handler {service_name}/{handler_name} was not found"
    service_type = SERVICE_TYPES[service.ty]
    if service_type is ServiceType.SERVICE:
        if key:
            return f"the service {service_name} is not keyed, but the call gives it the key {key!r}"
        target = Target(service_name, handler_name, service_type)
    else:
        handler_type = HANDLER_TYPES[handler.ty] if handler.ty is not None else HandlerType.EXCLUSIVE
        target = Target(service_name, handler_name, service_type, handler_type, key)
    completion, journal = retention(service, handler, has_idempotency_key)
    return CallTarget(target, deployment.id, completion, journal)


def call_resolver(schema: Callable[[], s.Schema]) -> Callable[[str, str, str, bool], CallTarget | str]:
    """A ``CallResolver`` for the attempt core that reads the latest schema at each call."""

    def resolve(service: str, handler: str, key: str, has_idempotency_key: bool) -> CallTarget | str:
        return resolve_call(schema(), service, handler, key, has_idempotency_key)

    return resolve


@dataclass(frozen=True, slots=True)
class Defaults:
    """The invoker's own settings where neither the handler nor its service set one."""

    inactivity_timeout_ms: int = s.DEFAULT_INACTIVITY_TIMEOUT_MS
    abort_timeout_ms: int = s.DEFAULT_ABORT_TIMEOUT_MS
    retry: RetryPolicy = RetryPolicy(
        s.DEFAULT_RETRY_INITIAL_INTERVAL_MS,
        s.DEFAULT_RETRY_FACTOR,
        s.DEFAULT_RETRY_MAX_INTERVAL_MS,
        s.DEFAULT_RETRY_MAX_ATTEMPTS,
        OnMaxAttempts.PAUSE,
    )


@dataclass(frozen=True, slots=True)
class HandlerSettings:
    inactivity_timeout_ms: int
    abort_timeout_ms: int
    lazy_state: bool
    retry: RetryPolicy


def handler_settings(
    service: s.Service | None, handler: s.Handler | None, defaults: Defaults
) -> HandlerSettings:
    """Each setting from ``handler``, else ``service``, else ``defaults`` (either may be unknown)."""
    h = handler or s.Handler(name="")
    svc = service or s.Service(name="", ty=s.ServiceType.SERVICE)
    hr, sr, d = h.retry, svc.retry, defaults.retry
    on_max = hr.on_max_attempts or sr.on_max_attempts
    max_attempts = hr.max_attempts if hr.max_attempts is not None else sr.max_attempts
    return HandlerSettings(
        inactivity_timeout_ms=_first(
            h.inactivity_timeout_ms, svc.inactivity_timeout_ms, defaults.inactivity_timeout_ms
        ),
        abort_timeout_ms=_first(h.abort_timeout_ms, svc.abort_timeout_ms, defaults.abort_timeout_ms),
        lazy_state=bool(_first(h.enable_lazy_state, svc.enable_lazy_state, False)),
        retry=RetryPolicy(
            initial_interval_ms=_first(hr.initial_interval_ms, sr.initial_interval_ms, d.initial_interval_ms),
            factor=_first(hr.exponentiation_factor, sr.exponentiation_factor, d.factor),
            max_interval_ms=_first(hr.max_interval_ms, sr.max_interval_ms, d.max_interval_ms),
            max_attempts=d.max_attempts if max_attempts is None else max_attempts,
            on_max_attempts=d.on_max_attempts if on_max is None else _ON_MAX_ATTEMPTS[on_max],
        ),
    )
