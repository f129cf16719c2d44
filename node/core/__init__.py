"""Sans-I/O cores of the node: no sockets, clocks or tasks (see DESIGN.md, rule 1)."""

from node.core.failure_detector import Alive, Dead, FailureDetector, Heartbeat, Tick

__all__ = ["Alive", "Dead", "FailureDetector", "Heartbeat", "Tick"]
