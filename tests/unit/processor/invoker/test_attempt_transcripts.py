"""Golden transcripts of one invocation attempt (testdata/attempt_*.txt, see attempt_harness.py).

Each file runs once with the SDK's bytes whole, then again with every ``sdk`` directive's bytes
cut in two at every position up to the longest one: the transcript must not change.
Rewrite with DATADRIVEN_REWRITE=1 and review the diff.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.datadriven import run_file, walk

from .attempt_harness import Harness

FILES = walk(Path(__file__).parent / "testdata", "attempt_*.txt")


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_transcript(path: Path) -> None:
    whole = Harness()
    run_file(path, whole.handle)
    for cut in range(1, whole.longest_sdk_input):
        run_file(path, Harness(split=cut).handle)


def test_files_are_found() -> None:
    assert len(FILES) >= 5
