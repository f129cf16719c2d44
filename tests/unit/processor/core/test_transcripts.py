"""The partition state machine's golden transcripts (testdata/*.txt, see transcript.py for the
directives). Rewrite with DATADRIVEN_REWRITE=1 and review the diff."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.datadriven import run_file, walk

from .transcript import Env

FILES = walk(Path(__file__).parent / "testdata")


def test_there_are_transcripts():
    assert len(FILES) >= 10


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_transcript(path: Path):
    run_file(path, Env().handle)
