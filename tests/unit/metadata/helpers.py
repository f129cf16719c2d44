"""Helpers shared by the metadata tests: running a test body, building etcd clusters on free ports."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from metadata import EtcdMember
from node.ports import LOOPBACK, free_ports

T = TypeVar("T")

# Cold start of an etcd member is ~1.5 s on the project machine; leave room for a loaded box.
ETCD_START_TIMEOUT_S = 30.0


def run_async(coro: Coroutine[Any, Any, T], timeout_s: float = 90.0) -> T:
    """Run one test body on a fresh event loop, failing it (not hanging) after ``timeout_s``."""
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


class EtcdMembers:
    """Builds etcd clusters on free loopback ports under one directory; kills them all at the end."""

    def __init__(self, base: Path) -> None:
        self._base = base
        self.members: list[EtcdMember] = []

    def cluster(self, names: list[str]) -> list[EtcdMember]:
        ports = free_ports(2 * len(names))
        client_ports, peer_ports = ports[: len(names)], ports[len(names) :]
        initial = {name: f"http://{LOOPBACK}:{peer}" for name, peer in zip(names, peer_ports, strict=True)}
        tag = uuid.uuid4().hex[:8]
        members = [
            EtcdMember(
                name,
                self._base / f"{tag}-{name}",
                client,
                peer,
                initial,
                log_path=self._base / f"{tag}-{name}.log",
            )
            for name, client, peer in zip(names, client_ports, peer_ports, strict=True)
        ]
        self.members.extend(members)
        return members

    def kill_all(self) -> None:
        """SIGKILL every member still running, by pid, and reap it."""
        for member in self.members:
            pid = member.pid
            if pid is not None and member.running:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            asyncio.run(member.kill())  # reaps; signalling a dead process is harmless


async def start_healthy(members: list[EtcdMember]) -> None:
    """Start every member, then wait for all: a member is healthy only once a quorum is up."""
    for member in members:
        await member.start()
    await asyncio.gather(*(member.wait_healthy(ETCD_START_TIMEOUT_S) for member in members))
