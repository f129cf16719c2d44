"""A real 3-member etcd cluster: losing the leader, writing on, and bringing the member back."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from typing import TypeVar

import grpc
from aetcd import rpc

from metadata import EtcdMetadataStore, MetadataUnavailable, UnknownOutcome, Versioned

from .helpers import ETCD_START_TIMEOUT_S, start_healthy

T = TypeVar("T")

FAILOVER_TIMEOUT_S = 20.0


async def eventually(call: Callable[[], Awaitable[T]], timeout_s: float, what: str) -> T:
    """Retry ``call`` while the cluster is unavailable or answers ``None``, until the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    last: object = None
    while True:
        try:
            result = await call()
            if result is not None:
                return result
            last = "None"
        except (MetadataUnavailable, UnknownOutcome) as error:
            last = error
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last: {last!r}")
        await asyncio.sleep(0.05)  # pacing between attempts; each attempt has its own deadline


def test_leader_loss_then_member_restart(etcd_members, run):
    members = etcd_members.cluster(["m1", "m2", "m3"])
    by_name = {member.name: member for member in members}

    async def body() -> None:
        await start_healthy(members)
        store = EtcdMetadataStore([m.client_endpoint for m in members], prefix="/failover/")
        try:
            assert sorted(await store.member_names()) == ["m1", "m2", "m3"]
            before = await store.put("k", b"before")
            leader = await eventually(store.leader_name, FAILOVER_TIMEOUT_S, "a leader")
            victim = by_name[leader]
            survivors = [m for m in members if m is not victim]

            # A watch whose preferred endpoint is the doomed leader must resume elsewhere.
            watch_store = EtcdMetadataStore(
                [victim.client_endpoint, *(m.client_endpoint for m in survivors)], prefix="/failover/"
            )
            async with aclosing(watch_store.watch("k")) as watch:
                assert await anext(watch) == Versioned(b"before", before)

                await victim.kill()

                after = await eventually(lambda: store.put("k", b"after"), FAILOVER_TIMEOUT_S, "a put")
                assert after > before
                new_leader = await eventually(store.leader_name, FAILOVER_TIMEOUT_S, "a new leader")
                assert new_leader != leader

                # Through the survivors alone, too.
                survivors_store = EtcdMetadataStore(
                    [m.client_endpoint for m in survivors], prefix="/failover/"
                )
                try:
                    later = await eventually(
                        lambda: survivors_store.put("k2", b"x"), FAILOVER_TIMEOUT_S, "a put via survivors"
                    )
                    assert later > after
                finally:
                    await survivors_store.close()

                # Every version up to the final one arrives (an UnknownOutcome retry may add one).
                while True:
                    change = await asyncio.wait_for(anext(watch), FAILOVER_TIMEOUT_S)
                    assert change is not None and change.value == b"after"
                    if change.version == after:
                        break
                    assert change.version < after
            await watch_store.close()

            # The killed member rejoins from its data dir and serves the value written without it.
            assert victim.initial_cluster_state == "existing"
            await victim.start()
            await victim.wait_healthy(ETCD_START_TIMEOUT_S)
            assert victim.running
            alone = EtcdMetadataStore([victim.client_endpoint], prefix="/failover/")
            try:
                value = await eventually(lambda: alone.get("k"), FAILOVER_TIMEOUT_S, "the restarted member")
                assert value == Versioned(b"after", after)
            finally:
                await alone.close()
        finally:
            await store.close()

    run(body(), 120.0)


async def compact(endpoint: str, revision: int) -> None:
    async with grpc.aio.insecure_channel(endpoint) as channel:
        await rpc.KVStub(channel).Compact(rpc.CompactionRequest(revision=revision, physical=True), timeout=10)


def test_watch_resumes_past_compacted_history_with_the_current_state(etcd_members, run):
    watched, *others = etcd_members.cluster(["m1", "m2", "m3"])

    async def body() -> None:
        await start_healthy([watched, *others])
        writer = EtcdMetadataStore([m.client_endpoint for m in others], prefix="/compact/")
        watcher = EtcdMetadataStore([watched.client_endpoint], prefix="/compact/")
        try:
            first = await writer.put("k", b"v0")
            async with aclosing(watcher.watch("k")) as watch:
                assert await anext(watch) == Versioned(b"v0", first)
                # The watch opens its stream only when asked for the next change, so everything
                # below happens while it is not connected anywhere.
                await watched.kill()
                versions = []
                for i in range(1, 6):
                    versions.append(
                        await eventually(lambda i=i: writer.put("k", b"v%d" % i), FAILOVER_TIMEOUT_S, "a put")
                    )
                await compact(others[0].client_endpoint, versions[-1])
                await watched.start()
                await watched.wait_healthy(ETCD_START_TIMEOUT_S)
                # Once the restarted member serves the last write, it has applied the compaction.
                latest = Versioned(b"v5", versions[-1])
                assert await eventually(lambda: watcher.get("k"), FAILOVER_TIMEOUT_S, "catch-up") == latest

                # v1..v4 are gone from etcd's history: the watch jumps to the current state.
                assert await asyncio.wait_for(anext(watch), FAILOVER_TIMEOUT_S) == latest
                v6 = await writer.put("k", b"v6")
                assert await asyncio.wait_for(anext(watch), FAILOVER_TIMEOUT_S) == Versioned(b"v6", v6)
        finally:
            await watcher.close()
            await writer.close()

    run(body(), 120.0)
