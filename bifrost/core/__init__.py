"""Sans-I/O cores of bifrost's replicated loglet.

Every core is a plain object with one funnel, `step(input) -> list[output]`; inputs and
outputs are frozen values. No sockets, clocks, tasks or module-level randomness in here (a
lint test enforces it): time arrives as `Tick(now_ms)`, randomness as an injected
`random.Random`, and durability as `Persist`/`Persisted` pairs the shell executes.

- `LogServer`: store rules, seal, trim, reads for all loglets of a node (group commit).
- `Sequencer`: offsets, flood stores, write-quorum commit, global tail, seal detection.
- `SealTask`, `FindTailTask`, `TrimTask`: seal to an f-majority; sealed tail with repair;
  trim on a write quorum.
- `Reconfiguration`: seal + find tail + CAS a new segment sequenced by this node.
- `ReadStream`: reads one loglet below the global tail, rotating over log-servers.
- `Chain`: the log's segments and LSN mapping; `NodeSetChecker`: quorum math.
"""

from __future__ import annotations

from ._chain import Chain, Segment
from ._describe import describe
from ._errors import BifrostCoreError, ChainError, LocalProtocolError
from ._io import NodeAlive, NodeDead, Response, Send, SetTimer, Tick
from ._log_server import LogletMode, LogServer, Persist, Persisted, PersistFailed, Reply, Request
from ._messages import (
    Data,
    Digest,
    DigestKind,
    DigestRange,
    GetDigest,
    GetLogletInfo,
    GetRecords,
    LogletInfo,
    Records,
    ReplyMessage,
    RequestHeader,
    RequestMessage,
    ResponseHeader,
    Seal,
    Sealed,
    Status,
    Store,
    Stored,
    StoreFlags,
    Trim,
    TrimGap,
    Trimmed,
)
from ._quorum import FMajorityResult, NodeSetChecker
from ._reader import Deliver, DeliverTrimGap, ReaderConfig, ReaderState, ReadStream, SetTail
from ._reconfigure import (
    CasChain,
    CasResult,
    Reconfiguration,
    Reconfigured,
    ReconfigureState,
    select_nodeset,
)
from ._sequencer import (
    Append,
    AppendError,
    AppendFailed,
    Committed,
    Sequencer,
    SequencerConfig,
    SequencerState,
)
from ._storage import (
    LogletState,
    LogStorage,
    MemoryLogStore,
    PutKnownGlobalTail,
    PutLocalTail,
    PutRecords,
    PutSealed,
    PutSequencer,
    PutTrimPoint,
    StorageError,
    Write,
)
from ._tasks import (
    FindTailState,
    FindTailTask,
    NoSafeTail,
    SealDone,
    SealState,
    SealTask,
    TailFound,
    TaskConfig,
    TrimDone,
    TrimState,
    TrimTask,
)
from ._types import MAX_OFFSET, GenerationalNodeId, LogletId, LogletParams, NodeId, describe_loglet, loglet_id

__all__ = [
    "MAX_OFFSET",
    "Append",
    "AppendError",
    "AppendFailed",
    "BifrostCoreError",
    "CasChain",
    "CasResult",
    "Chain",
    "ChainError",
    "Committed",
    "Data",
    "Deliver",
    "DeliverTrimGap",
    "Digest",
    "DigestKind",
    "DigestRange",
    "FMajorityResult",
    "FindTailState",
    "FindTailTask",
    "GenerationalNodeId",
    "GetDigest",
    "GetLogletInfo",
    "GetRecords",
    "LocalProtocolError",
    "LogServer",
    "LogStorage",
    "LogletId",
    "LogletInfo",
    "LogletMode",
    "LogletParams",
    "LogletState",
    "MemoryLogStore",
    "NodeAlive",
    "NodeDead",
    "NodeId",
    "NoSafeTail",
    "NodeSetChecker",
    "Persist",
    "PersistFailed",
    "Persisted",
    "PutKnownGlobalTail",
    "PutLocalTail",
    "PutRecords",
    "PutSealed",
    "PutSequencer",
    "PutTrimPoint",
    "ReadStream",
    "ReaderConfig",
    "ReaderState",
    "Reconfiguration",
    "ReconfigureState",
    "Reconfigured",
    "Records",
    "Reply",
    "ReplyMessage",
    "Request",
    "RequestHeader",
    "RequestMessage",
    "Response",
    "ResponseHeader",
    "Seal",
    "SealDone",
    "SealState",
    "SealTask",
    "Sealed",
    "Segment",
    "Send",
    "Sequencer",
    "SequencerConfig",
    "SequencerState",
    "SetTail",
    "SetTimer",
    "Status",
    "StorageError",
    "Store",
    "StoreFlags",
    "Stored",
    "TailFound",
    "TaskConfig",
    "Tick",
    "Trim",
    "TrimDone",
    "TrimState",
    "TrimTask",
    "TrimGap",
    "Trimmed",
    "Write",
    "describe",
    "describe_loglet",
    "loglet_id",
    "select_nodeset",
]
