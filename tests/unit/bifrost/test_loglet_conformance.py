import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from bifrost.loglet import Loglet, Record
from bifrost.providers.local import LocalLogletStore
from bifrost.providers.memory import MemoryLoglet
from bifrost.replicated.loglet import ReplicatedLoglet
from tests.unit.bifrost import loglet_conformance as suite
from tests.unit.bifrost.replicated_env import replicated_env

Check = Callable[[Loglet], Awaitable[None]]


async def run_memory(check: Check, tmp_path: Path) -> None:
    await check(MemoryLoglet(1))


async def run_local(check: Check, tmp_path: Path) -> None:
    store = LocalLogletStore(tmp_path / "local")
    try:
        # Another loglet in the same store must not leak into this one.
        await store.loglet(2).enqueue_batch([b"neighbour"])
        await check(store.loglet(1))
    finally:
        await store.close()


class ChainedLoglet:
    """A replicated loglet with the chain's part played by the test: readers of a replicated
    loglet end where the chain says it ends (concurrent find-tails may disagree, the chain's CAS
    picks one), so after a seal the found tail is recorded as the end, as Bifrost would."""

    def __init__(self, loglet: ReplicatedLoglet) -> None:
        self._loglet = loglet

    def __getattr__(self, name: str) -> object:
        return getattr(self._loglet, name)

    async def seal(self) -> None:
        await self._loglet.seal()
        self._loglet.mark_sealed((await self._loglet.find_tail()).offset)


def run_replicated(nodes: int, replication: int, via: int) -> Callable[[Check, Path], Awaitable[None]]:
    async def run(check: Check, tmp_path: Path) -> None:
        async with replicated_env(tmp_path, nodes) as env:
            await check(ChainedLoglet(env.providers[via].loglet(env.params(1, replication))))

    return run


PROVIDERS = {
    "memory": run_memory,
    "local": run_local,
    "replicated-r1": run_replicated(1, 1, via=1),
    "replicated-r2of3": run_replicated(3, 2, via=1),
    # Appends and reads through a node that is not the sequencer (remote append).
    "replicated-r2of3-remote": run_replicated(3, 2, via=2),
}


@pytest.mark.parametrize("check", suite.SUITE, ids=lambda f: f.__name__)
@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_conformance(provider: str, check: Check, tmp_path: Path) -> None:
    asyncio.run(PROVIDERS[provider](check, tmp_path))


def test_local_loglet_survives_reopen(tmp_path: Path) -> None:
    async def first() -> None:
        store = LocalLogletStore(tmp_path / "db")
        await store.loglet(1).enqueue_batch([b"a", b"b", b"c"])
        await store.loglet(1).trim(1)
        await store.loglet(5).seal()
        await store.close()

    async def second() -> None:
        store = LocalLogletStore(tmp_path / "db")
        loglet = store.loglet(1)
        assert (await loglet.find_tail()).offset == 4
        assert await loglet.get_trim_point() == 1
        assert await loglet.enqueue_batch([b"d"]) == 4
        assert await suite.read_n(loglet, 2, 3) == [Record(2, b"b"), Record(3, b"c"), Record(4, b"d")]
        assert (await store.loglet(5).find_tail()).sealed
        await store.close()

    asyncio.run(first())
    asyncio.run(second())
