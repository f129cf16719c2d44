"""How one discovery reply is judged (``node.discovery.interpret``): the manifest, or the admin's
error with Restate's code and whether another attempt may help."""

from __future__ import annotations

import json

import pytest

from metadata.schema import ProtocolType
from node.discovery import Discovered, DiscoveryError, interpret
from processor.invoker.transport import Response
from processor.protocol.manifest import ManifestError

from .sdk_schema import catalog_manifest

URI = "http://127.0.0.1:9080/base/"
MANIFEST, SDK_VERSION = catalog_manifest()
V4 = "application/vnd.restate.endpointmanifest.v4+json"


def reply(status: int = 200, body: bytes = MANIFEST, content_type: str | None = V4) -> Response:
    headers = [("x-restate-server", SDK_VERSION or "")]
    if content_type is not None:
        headers.append(("content-type", content_type))
    return Response(status, tuple(headers), body)


def test_a_manifest():
    discovered = interpret(reply(), URI, "HTTP/2.0")
    assert isinstance(discovered, Discovered)
    assert discovered.http_version == "HTTP/2.0"
    assert discovered.sdk_version == "restate-sdk-python/1.3.0"
    assert discovered.manifest.protocol_mode is ProtocolType.BIDI_STREAM
    assert [s.name for s in discovered.manifest.services] == [
        "Greeter",
        "Counter",
        "Signup",
        "Internal",
        "Formats",
    ]


@pytest.mark.parametrize(
    ("response", "code", "retryable", "start"),
    [
        (
            reply(404, b"no such path"),
            "META0003",
            False,
            "error when calling 'http://127.0.0.1:9080/base/': got status code '404'. Make sure the provided URI",
        ),
        (
            reply(503, b"busy"),
            "META0003",
            True,
            "error when calling 'http://127.0.0.1:9080/base/': got status code '503'. Body: busy",
        ),
        (reply(500), "META0003", True, "error when calling"),
        (reply(415, b"unsupported"), "META0003", False, "error when calling"),
        (
            reply(content_type=None),
            "META0013",
            False,
            "received a bad response from the SDK: No content type header was specified.",
        ),
        (
            reply(content_type="application/json"),
            "META0013",
            False,
            "received a bad response from the SDK: Bad content type header: 'application/json'.",
        ),
        (
            reply(body=b"\x00garbage{"),
            None,
            False,
            "received a bad response from the SDK that cannot be decoded",
        ),
        (
            reply(
                body=json.dumps(
                    {**json.loads(MANIFEST), "maxProtocolVersion": 4, "minProtocolVersion": 1}
                ).encode()
            ),
            "META0012",
            False,
            "unsupported service protocol versions: [1, 4].",
        ),
    ],
)
def test_failures(response, code, retryable, start):
    error = interpret(response, URI, "HTTP/2.0")
    assert isinstance(error, DiscoveryError)
    assert (error.status, error.restate_code, error.retryable) == (500, code, retryable)
    assert str(error).startswith(start), str(error)


def test_a_service_definition_the_registry_refuses_is_a_400():
    document = json.loads(MANIFEST)
    document["services"][0]["name"] = "restate_internal"
    with pytest.raises(ManifestError) as refused:
        interpret(reply(body=json.dumps(document).encode()), URI, "HTTP/2.0")
    assert (refused.value.status, refused.value.restate_code) == (400, "META0005")
