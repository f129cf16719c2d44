"""Errors of the bifrost cores.

Peers' refusals are values (`Status` in replies); exceptions here are for local misuse only:
a shell feeding an input the core cannot take in its current state.
"""

from __future__ import annotations


class BifrostCoreError(Exception):
    """Base of every exception raised by a bifrost core."""


class LocalProtocolError(BifrostCoreError):
    """An input arrived that the core's transition table has no entry for.

    The core that raised it has moved to its terminal FAILED state: a shell that sees this has
    a bug, and must not keep driving the core.
    """


class ChainError(BifrostCoreError):
    """A chain mutation that would break the chain's rules (bases must grow, tail stays...)."""
