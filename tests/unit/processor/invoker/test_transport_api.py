"""The transport's public value types and request-header checks (no sockets)."""

from __future__ import annotations

import asyncio

import pytest

from processor.invoker.transport import (
    Endpoint,
    HttpVersion,
    Response,
    ResponseHead,
    Transport,
    _encode_headers,
)


def test_endpoint_from_url_keeps_the_mount_prefix() -> None:
    endpoint, prefix = Endpoint.from_url("http://127.0.0.1:9080/services/", HttpVersion.HTTP11)
    assert endpoint == Endpoint("127.0.0.1", 9080, HttpVersion.HTTP11)
    assert prefix == "/services"
    assert Endpoint.from_url("http://deployment") == (Endpoint("deployment", 80, HttpVersion.H2C), "")
    assert Endpoint("::1", 9080).authority == "[::1]:9080"


@pytest.mark.parametrize("url", ["https://x:1", "ftp://x", "http:///path"])
def test_endpoint_from_url_rejects_what_it_cannot_reach(url: str) -> None:
    with pytest.raises(ValueError, match="deployment URL"):
        Endpoint.from_url(url)


def test_headers_are_lowercased_and_encoded() -> None:
    assert _encode_headers(
        [("Content-Type", "application/vnd.restate.invocation.v6"), ("X-Restate-Id", "inv_1")]
    ) == [
        (b"content-type", b"application/vnd.restate.invocation.v6"),
        (b"x-restate-id", b"inv_1"),
    ]


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("x-evil", "a\r\nset-cookie: 1", "CR, LF or NUL"),
        ("bad name", "v", "invalid name"),
        (":path", "/other", "invalid name"),
        ("transfer-encoding", "chunked", "set by the transport"),
        ("Host", "elsewhere", "set by the transport"),
        ("x-key", "日本", "latin-1"),
    ],
)
def test_bad_request_headers_are_refused(name: str, value: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        _encode_headers([(name, value)])


def test_header_lookup_is_case_insensitive() -> None:
    headers = (("content-type", "a"), ("x-restate-server", "restate-sdk-python/1.3.0"))
    assert ResponseHead(200, headers).get("X-Restate-Server") == "restate-sdk-python/1.3.0"
    assert Response(200, headers, b"").get("missing") is None


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "no-slash"), ("POST", "/a b"), ("post", "/x"), ("GET", "/\x00")]
)
def test_bad_request_lines_are_refused_before_any_connection(method: str, path: str) -> None:
    async def main() -> None:
        transport = Transport()
        try:
            with pytest.raises(ValueError, match="invalid request line"):
                await transport.open_stream(Endpoint("127.0.0.1", 9), path, method=method)
            assert transport.connections_opened == 0
        finally:
            await transport.close()

    asyncio.run(main())
