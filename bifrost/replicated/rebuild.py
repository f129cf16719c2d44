"""Rebuild a sealed loglet onto this node's log-server after the node's store lost its records.

A node whose store was wiped comes back DATA_LOSS: non-authoritative for every loglet it was a
member of. Open ones get sealed and replaced by reconfiguration (their tails are decided by the
other nodes); sealed ones keep their data on the other members only, one copy short. This puts
the copy back: read the loglet up to the end its chain fixes, from the other log-servers, and
re-store every record here with repair stores (which only ever copy records that exist), then
seal this copy. Afterwards the node holds what a whole store would, and the loglet can leave its
lost list. Trimmed prefixes are trimmed here too rather than copied.
"""

from __future__ import annotations

from bifrost.core import RequestHeader, Seal, Sealed, Status, Store, Stored, StoreFlags, Trim, Trimmed
from bifrost.core._types import LogletParams
from bifrost.errors import LogUnavailable
from bifrost.loglet import Record, TrimGap
from bifrost.policy import REBUILD_CALL_TIMEOUT_S
from bifrost.replicated.provider import ReplicatedProvider

# One repair store carries at most this much; the local log-server syncs each one.
_BATCH_RECORDS = 256
_BATCH_BYTES = 1024 * 1024
_CALL_TIMEOUT_S = REBUILD_CALL_TIMEOUT_S


async def rebuild_sealed_loglet(provider: ReplicatedProvider, params: LogletParams, end: int) -> int:
    """Copy offsets [1, end) of the loglet into this node's log-server; return how many records
    were stored. ``end`` is where the chain says the loglet ends (exclusive)."""
    loglet = provider.loglet(params)
    loglet.mark_sealed(end)
    me = provider.me.node
    header = RequestHeader(params.loglet_id, end)
    copied = 0
    batch: list[bytes] = []
    first = 1
    size = 0

    async def flush() -> None:
        nonlocal copied, batch, size
        if not batch:
            return
        store = Store(
            header, first, params.sequencer, tuple(batch), StoreFlags.IGNORE_SEAL | StoreFlags.REPAIR
        )
        reply = await provider.network.call(me, store, _CALL_TIMEOUT_S)
        if not isinstance(reply, Stored) or reply.header.status is not Status.OK:
            raise LogUnavailable(
                f"rebuilding {loglet.loglet_id}: own log-server refused a repair store: {reply}"
            )
        copied += len(batch)
        batch, size = [], 0

    if end > 1:
        async for entry in loglet.read(1):
            if isinstance(entry, TrimGap):
                await flush()
                trimmed = await provider.network.call(me, Trim(header, entry.to_offset), _CALL_TIMEOUT_S)
                if not isinstance(trimmed, Trimmed):
                    raise LogUnavailable(f"rebuilding {loglet.loglet_id}: own log-server refused a trim")
                first = entry.to_offset + 1
                continue
            assert isinstance(entry, Record)
            if not batch:
                first = entry.offset
            batch.append(entry.payload)
            size += len(entry.payload)
            if len(batch) >= _BATCH_RECORDS or size >= _BATCH_BYTES:
                await flush()
            if entry.offset + 1 >= end:
                break
        await flush()
    sealed = await provider.network.call(me, Seal(header, params.sequencer), _CALL_TIMEOUT_S)
    if not isinstance(sealed, Sealed) or sealed.header.status is not Status.OK:
        raise LogUnavailable(f"rebuilding {loglet.loglet_id}: own log-server did not seal: {sealed}")
    return copied
