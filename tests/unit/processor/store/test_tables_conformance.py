"""The `Tables` conformance suite against every implementation: `MemoryTables` (processor/core)
and the RocksDB partition store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from processor.core import MemoryStore
from processor.store import PartitionStore
from tests.unit.processor.store import tables_conformance as suite


def memory(tmp_path: Path) -> Iterator[suite.Begin]:
    yield MemoryStore().transaction


def rocksdb(tmp_path: Path) -> Iterator[suite.Begin]:
    with PartitionStore(tmp_path / "store") as store:
        # The neighbours' rows, in every table, must not show through partition 3.
        for neighbour in (2, 4):
            t = store.partition(neighbour).transaction()
            suite.write_everything(t)
            t.commit()
        yield store.partition(3).transaction


IMPLEMENTATIONS: dict[str, Callable[[Path], Iterator[suite.Begin]]] = {"memory": memory, "rocksdb": rocksdb}


@pytest.fixture(params=list(IMPLEMENTATIONS))
def begin(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[suite.Begin]:
    yield from IMPLEMENTATIONS[request.param](tmp_path)


@pytest.mark.parametrize("check", suite.SUITE, ids=lambda f: f.__name__)
def test_conformance(check: Callable[[suite.Begin], None], begin: suite.Begin) -> None:
    check(begin)
