"""The retry policy of invocation attempts: exponential backoff, a cap, and what happens when
the attempts run out (restate-protocol.md §8.3). The defaults (500 ms x 2, at most 60 s, 70
attempts, then pause) live with the schema's other defaults in metadata/schema.py.

``max_attempts`` counts every attempt, the first included (as the SDKs document it): with 3,
an invocation is tried three times, then paused or killed. The SDK's ``next_retry_delay``
replaces the policy's delay for the next retry only; the attempt still counts.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class OnMaxAttempts(enum.Enum):
    PAUSE = "pause"
    KILL = "kill"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    initial_interval_ms: int
    factor: float
    max_interval_ms: int
    max_attempts: int | None
    """None: retry for ever."""
    on_max_attempts: OnMaxAttempts

    def __post_init__(self) -> None:
        if self.initial_interval_ms < 0 or self.max_interval_ms < 0:
            raise ValueError("retry intervals must not be negative")
        if self.factor < 1.0:
            raise ValueError("the retry exponentiation factor must be at least 1")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1 (the first attempt counts)")

    def exhausted(self, failed_attempts: int) -> bool:
        """Whether no attempt may follow ``failed_attempts`` failed ones."""
        return self.max_attempts is not None and failed_attempts >= self.max_attempts

    def delay_ms(self, failed_attempts: int) -> int:
        """The wait before the next attempt, after ``failed_attempts`` (>= 1) failed ones."""
        if failed_attempts < 1:
            raise ValueError("delay_ms is asked after at least one failed attempt")
        delay = float(self.initial_interval_ms)
        # Stop multiplying once over the cap: a large attempt count must not overflow a float.
        for _ in range(failed_attempts - 1):
            if delay >= self.max_interval_ms:
                break
            delay *= self.factor
        return int(min(delay, self.max_interval_ms))
