"""Every timeout, interval and retry policy of the log, in one place.

Cores take theirs as config objects (`SequencerConfig`, `TaskConfig`, `ReaderConfig`,
`AppenderConfig`, `FacadeConfig`, with defaults there); the shells' are here. Each value says
what it bounds.
"""

from __future__ import annotations

from typing import Final

# --- calls between nodes -------------------------------------------------------------------

REMOTE_CALL_TIMEOUT_S: Final = 2.0
"""A remote append or tail query unanswered this long counts as unreachable (the appender
resends; the sequencer's node may be declared dead by the failure detector meanwhile)."""

TAIL_WAIT_MS: Final = 5000
"""A remote sequencer answers a WaitForTail after this long at the latest (the reader asks
again), so a silent sequencer is noticed within TAIL_WAIT_MS + REMOTE_CALL_TIMEOUT_S."""

REMOTE_RETRY_S: Final = 0.5
"""Before asking an unreachable or replaced sequencer again (tail followers)."""

REBUILD_CALL_TIMEOUT_S: Final = 10.0
"""A repair store into this node's own log-server while rebuilding lost data."""

ROUTE_TTL_S: Final = 60.0
"""Replies that never came are forgotten after this long (their cores gave up long before)."""

# --- chains and metadata -------------------------------------------------------------------

# How long to wait for a newer chain, and when a reconfiguration gives up: `FacadeConfig`.

WATCH_RETRY_S: Final = 0.5
"""After the metadata store interrupted a watch (leader change), before watching again."""

# --- failure detection and the watchdog -----------------------------------------------------

HEARTBEAT_INTERVAL_S: Final = 0.2
FAILURE_TIMEOUT_MS: Final = 1000
"""A peer silent this long is dead: appends to its sequencer stop waiting and reconfigure."""
SUSPECT_MS: Final = 2000
"""A dead peer that comes back with the same generation stays suspect this long."""
WATCHDOG_INTERVAL_S: Final = 1.0
"""How often idle logs are checked for a dead sequencer or a member that lost its data, and
how often a node that lost data tries to rebuild it."""
WATCHDOG_TAKEOVER_S: Final = 2.0
"""The lowest live node's watchdog replaces dead sequencers; any other node does once it has
seen a log's sequencer gone this long (the lowest may be cut off from the metadata store, or
just back from a partition and not yet aware of the death)."""

# --- disks ----------------------------------------------------------------------------------

DISK_RECOVERY_INTERVAL_S: Final = 1.0
"""After a failed write, how often the log-server tries to reopen its store and write again."""
