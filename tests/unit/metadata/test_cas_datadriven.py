"""The CAS core driven by a transcript (testdata/cas.txt), datadriven style."""

from __future__ import annotations

import re
from pathlib import Path

from metadata.core import Precondition, Versioned, decide
from tests.datadriven import TestCase, run_file

TESTDATA = Path(__file__).parent / "testdata"

_MATCHES = re.compile(r"matches\((\d+)\)")


def parse_precondition(text: str) -> Precondition:
    if text == "none":
        return Precondition.none()
    if text == "does_not_exist":
        return Precondition.does_not_exist()
    found = _MATCHES.fullmatch(text)
    if found is None:
        raise ValueError(f"unknown precondition {text!r}")
    return Precondition.matches(int(found.group(1)))


class Model:
    """Just enough store around the core to read like one: entries plus a revision counter."""

    def __init__(self) -> None:
        self.entries: dict[str, Versioned] = {}
        self.revision = 0

    def handle(self, case: TestCase) -> str:
        key = case.arg("key")
        if case.cmd == "get":
            current = self.entries.get(key)
            return "absent" if current is None else f"{current.value.decode()} @{current.version}"
        decision = decide(self.entries.get(key), parse_precondition(case.arg("pre")))
        if not decision.applies:
            return f"refused current={decision.current_version or 'absent'}"
        if case.cmd == "delete" and key not in self.entries:
            return "noop"
        self.revision += 1
        if case.cmd == "put":
            self.entries[key] = Versioned(case.arg("value").encode(), self.revision)
        elif case.cmd == "delete":
            del self.entries[key]
        else:
            raise ValueError(f"{case.pos}: unknown command {case.cmd}")
        return f"applied version={self.revision}"


def test_cas_transcript() -> None:
    run_file(TESTDATA / "cas.txt", Model().handle)
