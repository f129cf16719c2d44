"""The MetadataStore contract, run against every backend (``open_store`` is parametrised)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing

import pytest

from metadata import (
    InvalidKey,
    MetadataStore,
    Precondition,
    PreconditionFailed,
    StoreClosed,
    Versioned,
    read_modify_write,
)

STEP_TIMEOUT_S = 10.0


async def next_change(watch: AsyncIterator[Versioned | None]) -> Versioned | None:
    return await asyncio.wait_for(anext(watch), STEP_TIMEOUT_S)


async def refusal(coro: object) -> PreconditionFailed:
    with pytest.raises(PreconditionFailed) as info:
        await coro  # type: ignore[misc]
    return info.value


def test_get_missing_key_is_none(open_store, run):
    async def body():
        async with open_store() as store:
            assert await store.get("missing") is None

    run(body())


def test_put_then_get(open_store, run):
    async def body():
        async with open_store() as store:
            version = await store.put("a", b"one")
            assert version >= 1
            assert await store.get("a") == Versioned(b"one", version)
            # Binary and empty values are values like any other.
            binary = bytes(range(256))
            v2 = await store.put("a", binary)
            assert await store.get("a") == Versioned(binary, v2)
            v3 = await store.put("empty", b"")
            assert await store.get("empty") == Versioned(b"", v3)

    run(body())


def test_does_not_exist_precondition(open_store, run):
    async def body():
        async with open_store() as store:
            version = await store.put("k", b"first", Precondition.does_not_exist())
            error = await refusal(store.put("k", b"second", Precondition.does_not_exist()))
            assert error.current_version == version
            assert await store.get("k") == Versioned(b"first", version)

    run(body())


def test_matches_precondition(open_store, run):
    async def body():
        async with open_store() as store:
            missing = await refusal(store.put("k", b"x", Precondition.matches(1)))
            assert missing.current_version is None
            assert await store.get("k") is None

            v1 = await store.put("k", b"one")
            v2 = await store.put("k", b"two", Precondition.matches(v1))
            assert v2 > v1
            stale = await refusal(store.put("k", b"three", Precondition.matches(v1)))
            assert stale.current_version == v2
            assert await store.get("k") == Versioned(b"two", v2)

    run(body())


def test_no_precondition_overwrites(open_store, run):
    async def body():
        async with open_store() as store:
            v1 = await store.put("k", b"one", Precondition.none())
            v2 = await store.put("k", b"two", Precondition.none())
            assert v2 > v1
            assert await store.get("k") == Versioned(b"two", v2)

    run(body())


def test_versions_strictly_increase_across_delete_and_recreate(open_store, run):
    async def body():
        async with open_store() as store:
            seen = []
            for round_no in range(3):
                seen.append(await store.put("k", b"a%d" % round_no, Precondition.does_not_exist()))
                seen.append(await store.put("k", b"b%d" % round_no))
                await store.delete("k")
                assert await store.get("k") is None
            assert seen == sorted(seen)
            assert len(set(seen)) == len(seen)
            assert all(version >= 1 for version in seen)
            # Writing another key moves versions on too: a version is never reused anywhere.
            other = await store.put("other", b"x")
            assert other > seen[-1]

    run(body())


def test_delete_with_precondition(open_store, run):
    async def body():
        async with open_store() as store:
            await store.delete("absent")  # no precondition: deleting nothing is fine
            await store.delete("absent", Precondition.does_not_exist())
            error = await refusal(store.delete("absent", Precondition.matches(5)))
            assert error.current_version is None

            v1 = await store.put("k", b"one")
            v2 = await store.put("k", b"two")
            stale = await refusal(store.delete("k", Precondition.matches(v1)))
            assert stale.current_version == v2
            present = await refusal(store.delete("k", Precondition.does_not_exist()))
            assert present.current_version == v2
            assert await store.get("k") == Versioned(b"two", v2)

            await store.delete("k", Precondition.matches(v2))
            assert await store.get("k") is None
            v3 = await store.put("k", b"again", Precondition.does_not_exist())
            assert v3 > v2

    run(body())


def test_watch_sees_current_state_then_every_change(open_store, run):
    async def body():
        async with open_store() as store:
            v0 = await store.put("w", b"zero")
            async with aclosing(store.watch("w")) as watch:
                assert await next_change(watch) == Versioned(b"zero", v0)
                v1 = await store.put("w", b"one")
                v2 = await store.put("w", b"two")
                await store.delete("w")
                v3 = await store.put("w", b"three")
                await store.put("unrelated", b"noise")
                assert await next_change(watch) == Versioned(b"one", v1)
                assert await next_change(watch) == Versioned(b"two", v2)
                assert await next_change(watch) is None
                assert await next_change(watch) == Versioned(b"three", v3)

    run(body())


def test_watch_of_absent_key_starts_with_none(open_store, run):
    async def body():
        async with open_store() as store:
            async with aclosing(store.watch("later")) as watch:
                assert await next_change(watch) is None
                version = await store.put("later", b"here")
                assert await next_change(watch) == Versioned(b"here", version)

    run(body())


def test_watch_does_not_miss_writes_racing_its_start(open_store, run):
    async def body():
        async with open_store() as store:

            async def writer() -> list[int]:
                return [await store.put("busy", b"%d" % i) for i in range(20)]

            async with aclosing(store.watch("busy")) as watch:
                writes = asyncio.create_task(writer())
                first = await next_change(watch)
                versions = await writes
                seen = [] if first is None else [first.version]
                while not seen or seen[-1] != versions[-1]:
                    change = await next_change(watch)
                    assert change is not None
                    seen.append(change.version)
                # Starting from whatever state the watch saw first, every later version follows,
                # in order, and the final one is never skipped.
                assert seen == versions[len(versions) - len(seen) :]

    run(body())


def test_racing_writers_exactly_one_wins(open_store, run):
    async def body():
        async with open_store() as store:
            base = await store.put("race", b"base")

            async def attempt(i: int) -> int | PreconditionFailed:
                try:
                    return await store.put("race", b"writer-%d" % i, Precondition.matches(base))
                except PreconditionFailed as error:
                    return error

            results = await asyncio.gather(*(attempt(i) for i in range(20)))
            wins = [r for r in results if isinstance(r, int)]
            losses = [r for r in results if isinstance(r, PreconditionFailed)]
            assert len(wins) == 1
            assert len(losses) == 19
            assert {loss.current_version for loss in losses} == {wins[0]}
            current = await store.get("race")
            assert current is not None and current.version == wins[0]
            assert current.value == b"writer-%d" % results.index(wins[0])

    run(body())


def test_read_modify_write_under_concurrency(open_store, run):
    async def body():
        async with open_store() as store:

            def increment(raw: bytes | None) -> bytes:
                return b"%d" % (int(raw or b"0") + 1)

            results = await asyncio.gather(
                *(read_modify_write(store, "counter", increment) for _ in range(10))
            )
            final = await store.get("counter")
            assert final is not None and final.value == b"10"
            assert sorted(int(r.value) for r in results) == list(range(1, 11))
            assert len({r.version for r in results}) == 10
            assert max(r.version for r in results) == final.version

    run(body())


def test_read_modify_write_propagates_fn_errors_and_writes_nothing(open_store, run):
    async def body():
        async with open_store() as store:

            def refuse(raw: bytes | None) -> bytes:
                raise ValueError("no")

            with pytest.raises(ValueError):
                await read_modify_write(store, "k", refuse)
            assert await store.get("k") is None

    run(body())


BAD_KEYS = ["", "has space", "tab\there", "new\nline", "caf\u00e9", "nul\x00", "x" * 257, "\x7f"]


@pytest.mark.parametrize("key", BAD_KEYS, ids=repr)
def test_invalid_keys_are_refused(open_store, run, key):
    async def body():
        async with open_store() as store:
            with pytest.raises(InvalidKey):
                await store.get(key)
            with pytest.raises(InvalidKey):
                await store.put(key, b"v")
            with pytest.raises(InvalidKey):
                await store.delete(key)
            with pytest.raises(InvalidKey):
                await anext(store.watch(key))

    run(body())


def test_longest_and_oddest_valid_keys(open_store, run):
    async def body():
        async with open_store() as store:
            for key in ["x" * 256, "!", "pp_epoch_7", "a/b:c~{}[]"]:
                version = await store.put(key, key.encode())
                assert await store.get(key) == Versioned(key.encode(), version)

    run(body())


def test_closed_store_refuses_requests_and_ends_watches(open_store, run):
    async def body():
        async with open_store() as store:
            watch = store.watch("k")
            assert await next_change(watch) is None
            pending = asyncio.ensure_future(anext(watch))
            await store.close()
            with pytest.raises(StopAsyncIteration):
                await asyncio.wait_for(pending, STEP_TIMEOUT_S)
            with pytest.raises(StoreClosed):
                await store.get("k")
            with pytest.raises(StoreClosed):
                await store.put("k", b"v")
            await store.close()  # idempotent

    run(body())


def test_data_is_shared_between_store_instances(open_store, run):
    async def body():
        async with open_store() as store:
            version = await store.put("k", b"v")
        async with open_store() as again:
            assert await again.get("k") == Versioned(b"v", version)

    run(body())


def _assert_store(store: MetadataStore) -> None:
    # Both backends meet the Protocol structurally (a typo in a method name fails here).
    for name in ("get", "put", "delete", "watch", "close"):
        assert callable(getattr(store, name))


def test_backends_have_the_protocol_methods(open_store, run):
    async def body():
        async with open_store() as store:
            _assert_store(store)

    run(body())


def test_a_value_over_the_limit_is_refused_definitely_and_nothing_is_written(open_store, run):
    from metadata import ValueTooLarge
    from metadata.core.keys import MAX_VALUE_BYTES

    async def body():
        async with open_store() as store:
            at_limit = await store.put("big", b"x" * MAX_VALUE_BYTES)
            for size in (MAX_VALUE_BYTES + 1, int(3.9 * 1024 * 1024)):
                with pytest.raises(ValueTooLarge, match="too large"):
                    await store.put("big", b"y" * size)
                with pytest.raises(ValueTooLarge):
                    await store.put("fresh", b"y" * size, Precondition.does_not_exist())
            assert await store.get("big") == Versioned(b"x" * MAX_VALUE_BYTES, at_limit)
            assert await store.get("fresh") is None

    run(body())
