"""What every benchmark command shares: its error type, the event loop it drives load from,
progress lines on stderr, and the argument types of its options."""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


class BenchError(Exception):
    """The benchmark could not measure something; the message says what and why."""


@dataclass(slots=True)
class Window:
    """The measured window of a closed loop: its tasks run from the warm-up on and stop when
    ``stop`` is set; latency samples are the operations issued and answered inside the window,
    throughput counts the items answered inside it."""

    start: float = math.inf
    end: float = math.inf
    stop: bool = False
    done: int = 0
    errors: int = 0
    calls: int = 0
    last_error: str = ""
    samples: list[float] = field(default_factory=list)

    def failed(self, error: str) -> None:
        self.calls += 1
        self.errors += 1
        self.last_error = error

    def answered(self, t0: float, t1: float, items: int = 1) -> bool:
        """Count an operation issued at ``t0`` and answered at ``t1``; True if it is a sample."""
        self.calls += 1
        if self.start <= t1 <= self.end:
            self.done += items
        if self.start <= t0 and t1 <= self.end:
            self.samples.append(t1 - t0)
            return True
        return False

    def sick(self, max_error_fraction: float) -> bool:
        """No samples, or too many failures for the latencies to mean anything."""
        return not self.samples or self.errors > max_error_fraction * max(1, self.calls)

    def failures(self) -> str:
        return (
            f"{self.errors} of {self.calls} failed (last: {self.last_error or 'none'}), "
            f"{len(self.samples)} samples"
        )


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when installed: the nodes do, and the load generator must not be the part
    that is measured."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value
