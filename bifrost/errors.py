"""Errors of the bifrost component. The edges translate them into HTTP, gRPC or CLI errors."""

from __future__ import annotations


class BifrostError(Exception):
    """Base of every bifrost error."""


class LogletSealed(BifrostError):
    """The loglet is sealed: the batch was not (and will never be) acknowledged by this loglet."""

    def __init__(self, tail: int) -> None:
        super().__init__(f"loglet sealed at offset {tail}")
        self.tail = tail


class UnknownLog(BifrostError):
    def __init__(self, log_id: int) -> None:
        super().__init__(f"unknown log {log_id}")
        self.log_id = log_id


class RecordTooLarge(BifrostError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"record of {size} bytes is over the limit of {limit} bytes")


class BatchTooLarge(RecordTooLarge):
    """An append batch whose records together (with their per-record overhead, see
    bifrost.limits) would not fit the largest message the nodes exchange."""

    def __init__(self, records: int, cost: int, limit: int) -> None:
        BifrostError.__init__(
            self,
            f"append batch of {records} records costs {cost} bytes, over the limit of {limit} bytes; "
            "split it into smaller appends",
        )


class InvalidLsn(BifrostError):
    """An LSN outside what the operation accepts (0, or beyond the tail)."""


class LogUnavailable(BifrostError):
    """The log cannot make progress now (no quorum, no sequencer); retrying later may succeed."""


class LogSealed(BifrostError):
    """The log was sealed by an operator: no append succeeds until it is reconfigured."""


class SequencerGone(LogUnavailable):
    """The loglet's sequencer process is gone for good (its node restarted with a new
    generation): the segment must be sealed and replaced."""


class LogletWriteUnavailable(LogUnavailable):
    """Too few of the loglet's log-servers can write (disk faults): it must be sealed and
    replaced by a loglet on healthy disks."""


class NoWritableNodeset(LogUnavailable):
    """Enough log-servers are alive, but too few of them can take writes (read-only after a disk
    fault, or rebuilding lost data): no new segment can start until one recovers. Appends fail
    at once with this, rather than wait for a deadline."""


class OutOfOrder(LogUnavailable):
    """The sequencer refused a batch that would overtake an earlier batch of the same appender
    it never received: the appender resends from its first unacknowledged batch."""
