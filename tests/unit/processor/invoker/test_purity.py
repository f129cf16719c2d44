"""The transport's sans-I/O modules import no I/O (sockets, asyncio, clocks), only h2/h11 and each other."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_core_purity import ROOT, violations

SANS_IO = [
    "_goaway_filter.py",
    "_h1_session.py",
    "_h2_session.py",
    "_transport_errors.py",
    "_transport_events.py",
]


@pytest.mark.parametrize("name", SANS_IO)
def test_module_is_sans_io(name: str) -> None:
    path = Path(ROOT, "processor", "invoker", name)
    found = [
        v
        for v in violations(path.read_text(), "processor.invoker")
        if not v.startswith("processor.invoker._")
    ]
    assert found == [], f"{path} must stay sans-I/O"
