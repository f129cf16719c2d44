"""The HTTP listeners' connection cap and request-head timeout, on a real aiohttp server."""

import asyncio

from aiohttp import ClientSession, web

from node.http_guard import GuardedSite, HttpLimits


async def _ok(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _start(limits: HttpLimits) -> tuple[web.AppRunner, GuardedSite, list[str]]:
    app = web.Application()
    app.add_routes([web.get("/health", _ok)])
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=limits.header_timeout_s)
    await runner.setup()
    refused: list[str] = []
    site = GuardedSite(runner, "127.0.0.1", 0, limits, refused.append)
    await site.start()
    return runner, site, refused


async def _health(port: int) -> int:
    async with ClientSession() as session, session.get(f"http://127.0.0.1:{port}/health") as resp:
        return resp.status


async def _slow_client(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # the head never ends
    return reader, writer


async def _closed(reader: asyncio.StreamReader) -> bool:
    try:
        return await reader.read() == b""
    except ConnectionResetError:
        return True


def test_slow_clients_are_closed_at_the_head_deadline_while_health_answers() -> None:
    async def main() -> None:
        runner, site, refused = await _start(HttpLimits(max_connections=100, header_timeout_s=0.5))
        port = int(site.name.rsplit(":", 1)[1])
        slow = [await _slow_client(port) for _ in range(60)]
        assert await _health(port) == 200
        async with asyncio.timeout(10):
            assert all(await asyncio.gather(*(_closed(r) for r, _ in slow)))
        assert refused.count("header-timeout") == 60
        assert site.open_connections == 0
        for _, w in slow:
            w.close()
        await runner.cleanup()

    asyncio.run(main())


def test_a_connection_over_the_cap_is_refused_at_once() -> None:
    async def main() -> None:
        runner, site, refused = await _start(HttpLimits(max_connections=5, header_timeout_s=30))
        port = int(site.name.rsplit(":", 1)[1])
        held = [await _slow_client(port) for _ in range(5)]
        extra, extra_w = await asyncio.open_connection("127.0.0.1", port)
        async with asyncio.timeout(5):
            assert await _closed(extra)
        assert refused == ["too-many-connections"]
        for _, w in held:
            w.close()
        async with asyncio.timeout(5):
            while site.open_connections:
                await asyncio.sleep(0.01)
        assert await _health(port) == 200
        extra_w.close()
        await runner.cleanup()

    asyncio.run(main())


def test_a_kept_alive_connection_serves_many_requests() -> None:
    async def main() -> None:
        runner, site, refused = await _start(HttpLimits(max_connections=5, header_timeout_s=2))
        port = int(site.name.rsplit(":", 1)[1])
        async with ClientSession() as session:
            for _ in range(20):
                async with session.get(f"http://127.0.0.1:{port}/health") as resp:
                    assert resp.status == 200
        assert refused == []
        await runner.cleanup()

    asyncio.run(main())
