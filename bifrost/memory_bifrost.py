"""An in-memory Bifrost for tests of the layers above (partition processors, the ingress): the
real facade and appender over `MemoryProvider` loglets and a `MemoryMetadataStore`, in one
process, with nothing on disk and no other node.

Build one inside a running event loop, use it like any Bifrost, close it::

    bifrost = await memory_bifrost(num_logs=4)
    lsn = await bifrost.append(0, [b"a", b"b"])
    async for entry in bifrost.read(0, lsn, lsn + 1): ...
    await bifrost.close()
"""

from __future__ import annotations

from bifrost.bifrost import Bifrost
from bifrost.chain_store import provision_logs
from bifrost.core._types import GenerationalNodeId
from bifrost.limits import DEFAULT_MAX_RECORD_BYTES
from bifrost.providers.memory import MemoryProvider
from metadata.memory import MemoryMetadataStore

__all__ = ["memory_bifrost"]


async def memory_bifrost(num_logs: int = 1, *, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Bifrost:
    """A Bifrost over in-memory loglets, logs ``0 .. num_logs - 1`` provisioned with R=1 (a log's
    first segment is created by its first append)."""
    store = MemoryMetadataStore()
    await provision_logs(store, num_logs, replication=1)
    provider = MemoryProvider(GenerationalNodeId(1, 1))
    return Bifrost(store, provider, lambda: [1], max_record_bytes=max_record_bytes)
