"""Service discovery: ask a deployment what it serves, as Restate 1.7's admin does.

``GET {uri}/discover`` over h2c (HTTP/2 with prior knowledge) by default, or HTTP/1.1 with
``use_http_11``, with the manifest ``accept`` header of ``processor.protocol.manifest`` and the
deployment's additional headers. The reply is validated by ``manifest.parse_manifest``.

Failures are ``DiscoveryError`` (a ``SchemaError``: the admin answers ``status`` with
``{"message": "[CODE] …", "restate_code": CODE}``), worded like Restate's:

* cannot connect, connection lost, a non-2xx status: 500, META0003 ("error when calling '…'");
  an h2c request answered in HTTP/1.1: META0014 (use ``use_http_11``);
* a reply without the manifest content type: META0013; a body that is not a manifest: 500 with no
  code; protocol versions we cannot speak: META0012.

Transient failures (connect errors, a lost connection, 408/429/500/502/503/504) are retried
like Restate's admin does: 4 more attempts after 100, 200, 400 and 800 ms. Each attempt has a
deadline, since a deployment that accepts and never answers must not hang the admin call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from metadata.schema import SchemaError
from processor.invoker.transport import (
    ConnectFailed,
    ConnectionLost,
    Endpoint,
    HttpVersion,
    ProtocolViolation,
    Response,
    Transport,
    TransportConfig,
    TransportError,
)
from processor.protocol.manifest import (
    DISCOVERY_PATH,
    ManifestError,
    discovery_request_headers,
    manifest_version,
    parse_manifest,
)
from processor.protocol.manifest import (
    Endpoint as Manifest,
)

RETRY_DELAYS_S: Final = (0.1, 0.2, 0.4, 0.8)
ATTEMPT_TIMEOUT_S: Final = 10.0
_RETRYABLE_STATUS: Final = frozenset({408, 429, 500, 502, 503, 504})
HTTP2: Final = "HTTP/2.0"
HTTP11: Final = "HTTP/1.1"
_NOT_HTTP2: Final = "did not answer as an HTTP/2 server"


class DiscoveryError(SchemaError):
    """Discovery failed; ``retryable`` says whether another attempt may succeed."""

    def __init__(
        self, message: str, *, restate_code: str | None = "META0003", retryable: bool = False
    ) -> None:
        super().__init__(message, status=500, restate_code=restate_code)
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class Discovered:
    """A deployment's validated manifest and how we talked to it."""

    manifest: Manifest
    http_version: str  # "HTTP/2.0" or "HTTP/1.1", as the admin API prints it
    sdk_version: str | None  # the SDK's x-restate-server header


def _url(uri: str) -> str:
    # Restate names the deployment's URI in these messages (not the /discover URL it called).
    return uri


def interpret(response: Response, uri: str, http_version: str) -> Discovered | DiscoveryError:
    """The outcome of one discovery reply (pure); a refused service definition raises its 400."""
    if response.status == 404:
        return DiscoveryError(
            f"error when calling '{_url(uri)}': got status code '404'. Make sure the provided URI has the correct "
            f"path where the Restate SDK endpoint is mounted. Body: {_text(response.body)}"
        )
    if not 200 <= response.status < 300:
        return DiscoveryError(
            f"error when calling '{_url(uri)}': got status code '{response.status}'. Body: {_text(response.body)}",
            retryable=response.status in _RETRYABLE_STATUS,
        )
    sdk_version = response.get("x-restate-server")
    try:
        manifest_version(response.get("content-type"))
        manifest = parse_manifest(response.body, sdk_version=sdk_version)
    except ManifestError as refused:
        if refused.status >= 500:
            return DiscoveryError(str(refused), restate_code=refused.restate_code)
        raise
    return Discovered(manifest, http_version, sdk_version)


def _text(body: bytes, limit: int = 1024) -> str:
    return body[:limit].decode("utf-8", "replace")


class DiscoveryClient:
    """Discovers deployments; one short-lived transport per discovery (they are rare, and a
    pooled connection to a deployment that went away would only be a liability)."""

    def __init__(
        self,
        *,
        retry_delays_s: Sequence[float] = RETRY_DELAYS_S,
        attempt_timeout_s: float = ATTEMPT_TIMEOUT_S,
        transport_config: TransportConfig | None = None,
    ) -> None:
        self._delays = tuple(retry_delays_s)
        self._attempt_timeout_s = attempt_timeout_s
        self._transport_config = transport_config or TransportConfig(connect_timeout_s=attempt_timeout_s)

    async def discover(
        self, uri: str, *, use_http_11: bool = False, headers: Mapping[str, str] | None = None
    ) -> Discovered:
        """Discover ``uri`` (``http://host:port[/prefix]``); raises ``DiscoveryError`` or a 400
        ``ManifestError`` (a service definition the registry refuses)."""
        version = HttpVersion.HTTP11 if use_http_11 else HttpVersion.H2C
        endpoint, prefix = Endpoint.from_url(uri, version)
        request_headers = [*discovery_request_headers().items(), *(headers or {}).items()]
        path = (prefix or "") + DISCOVERY_PATH
        attempt = 0
        while True:
            outcome = await self._attempt(endpoint, path, request_headers, uri, use_http_11)
            if isinstance(outcome, Discovered):
                return outcome
            if not outcome.retryable or attempt >= len(self._delays):
                raise outcome
            await asyncio.sleep(self._delays[attempt])
            attempt += 1

    async def _attempt(
        self,
        endpoint: Endpoint,
        path: str,
        headers: list[tuple[str, str]],
        uri: str,
        use_http_11: bool,
    ) -> Discovered | DiscoveryError:
        try:
            async with (
                Transport(self._transport_config) as transport,
                asyncio.timeout(self._attempt_timeout_s),
            ):
                response = await transport.request(endpoint, "GET", path, headers)
        except TimeoutError:
            return DiscoveryError(
                f"error when calling '{_url(uri)}': no answer within {self._attempt_timeout_s:g}s",
                retryable=True,
            )
        except (ConnectFailed, ConnectionLost, ProtocolViolation) as error:
            # The transport reports an HTTP/1.x answer to our h2c preface as a failed connect
            # naming it (it has no type of its own): Restate's META0014 advice fits it exactly.
            if not use_http_11 and _NOT_HTTP2 in str(error):
                return DiscoveryError(
                    f"error when calling '{_url(uri)}': server possibly supports only HTTP1.1, consider "
                    "discovery with --use-http1.1.",
                    restate_code="META0014",
                )
            if isinstance(error, ProtocolViolation):
                hint = "server possibly supports only HTTP/2, consider discovering without --use-http1.1.\nReason: "
                return DiscoveryError(
                    f"error when calling '{_url(uri)}': {hint if use_http_11 else ''}{error}"
                )
            return DiscoveryError(
                f"error when calling '{_url(uri)}': unable to reach the remote endpoint.\nReason: {error}",
                retryable=True,
            )
        except TransportError as error:
            return DiscoveryError(f"error when calling '{_url(uri)}': {error}")
        return interpret(response, uri, HTTP11 if use_http_11 else HTTP2)
