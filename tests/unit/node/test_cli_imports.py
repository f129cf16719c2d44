"""The installed ``durastate`` command must start without the checkout's tests/ on the import
path and without the test dependencies (restate-sdk), and a node started as ``python -m
node.cli`` from a directory holding a bench.py must not import it: building the parser imports
neither tests/, nor bench/, nor a test dependency."""

from __future__ import annotations

import subprocess
import sys

from tests.support.procs import ROOT

PROBE = """
import sys
from node.cli import build_parser
build_parser()
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("tests", "bench", "restate", "hypercorn"))
print(" ".join(bad))
"""


def test_the_cli_parser_imports_no_test_code_or_test_dependency() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "", f"imported by `durastate`'s parser: {out.stdout.strip()}"
