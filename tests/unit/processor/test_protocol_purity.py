"""The protocol package and the ids module are sans-I/O like the cores: no clocks, sockets, tasks,
disks or module-level randomness (the project-import rule of the cores does not apply: the manifest
parser builds metadata.schema records)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_core_purity import PROJECT, ROOT, violations

MODULES = sorted((ROOT / "processor" / "protocol").glob("*.py")) + [ROOT / "processor" / "ids.py"]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_module_is_sans_io(path: Path):
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = [v for v in violations(path.read_text(), package) if v.split(".")[0] not in PROJECT]
    assert found == [], f"{path} must stay sans-I/O"


def test_the_modules_are_found():
    assert {p.name for p in MODULES} >= {"_codec.py", "_registry.py", "manifest.py", "ids.py"}
