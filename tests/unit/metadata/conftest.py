"""Fixtures for the metadata tests: stores over both backends, and etcd members on free ports.

Every etcd process a fixture starts is SIGKILLed by pid and reaped in a finalizer, whatever the
test did to it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from metadata import EtcdMetadataStore, LocalMetadataStore, MetadataStore

from .helpers import EtcdMembers, run_async, start_healthy

OpenStore = Callable[[], AbstractAsyncContextManager[MetadataStore]]


@pytest.fixture
def run() -> Callable[..., Any]:
    """``run(coro, timeout_s=90)``: run a test body on a fresh event loop."""
    return run_async


@pytest.fixture
def etcd_members(tmp_path: Path) -> Iterator[EtcdMembers]:
    members = EtcdMembers(tmp_path)
    try:
        yield members
    finally:
        members.kill_all()


@pytest.fixture(scope="module")
def etcd_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One single-member etcd shared by a module's tests; each test isolates itself by key prefix."""
    members = EtcdMembers(tmp_path_factory.mktemp("etcd"))
    try:
        (member,) = members.cluster(["solo"])
        run_async(start_healthy([member]))
        yield member.client_endpoint
    finally:
        members.kill_all()


@pytest.fixture(params=["local", "etcd"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> OpenStore:
    """``async with open_store() as store``: a fresh, empty store of the parametrised backend.

    Opening it again in the same test reaches the same data (same directory or same etcd prefix).
    """
    factory: Callable[[], MetadataStore]
    if request.param == "local":
        path = tmp_path / "metadata"

        def factory() -> MetadataStore:
            return LocalMetadataStore.open(path)

    else:
        endpoint = request.getfixturevalue("etcd_endpoint")
        prefix = f"/test-{uuid.uuid4().hex}/"

        def factory() -> MetadataStore:
            return EtcdMetadataStore([endpoint], prefix=prefix)

    @asynccontextmanager
    async def opened() -> AsyncIterator[MetadataStore]:
        store = factory()
        try:
            yield store
        finally:
            await store.close()

    return opened
