"""The cluster secret: the one key every node and operator of a cluster shares.

It authenticates node-to-node data-port connections (bifrost/net) and node gRPC calls
(node/grpc_auth.py). Format: a file holding the key as hex text on one line, mode 0600;
``generate_file`` writes 32 random bytes.

Where a node finds it (``for_node``): ``security.secret`` (hex, e.g. from
``DURASTATE_SECURITY_SECRET``), else ``security.secret_file``, else ``<base_dir>/cluster.secret``,
created on first start. (node/config.py refuses the last case for a node that binds a
non-loopback address.) ``durastate cluster up`` writes ``BASE/cluster.secret`` and points every
node's ``security.secret_file`` at it.

Where a client finds it (``for_client``): ``--secret-file``, else the local cluster's
``BASE/cluster.secret`` for ``--base-dir``, else ``DURASTATE_SECURITY_SECRET``, else
``./durastate-data/cluster.secret`` (the single node's default base dir). In-process clients
(tests, bench, chaos) that name a node only by address find the secret of any local cluster this
process loaded, through ``remember``/``for_address``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from bifrost.net.core import MIN_SECRET_BYTES

if TYPE_CHECKING:
    from node.config import NodeConfig

SECRET_FILE = "cluster.secret"
SECRET_BYTES = 32
ENV_SECRET = "DURASTATE_SECURITY_SECRET"
DEFAULT_NODE_BASE_DIR = Path("durastate-data")


class SecretError(Exception):
    """The secret is missing, unreadable or malformed; the message names where it was looked for
    (never the secret itself)."""


def parse_hex(text: str, source: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise SecretError(f"the cluster secret in {source} is not hex text") from None
    if len(key) < MIN_SECRET_BYTES:
        raise SecretError(
            f"the cluster secret in {source} is {len(key)} bytes; at least {MIN_SECRET_BYTES} are needed"
        )
    return key


def read_file(path: Path) -> bytes:
    try:
        text = path.read_text()
    except OSError as e:
        raise SecretError(f"cannot read the cluster secret file {path}: {e.strerror or e}") from None
    return parse_hex(text, str(path))


def generate_file(path: Path) -> bytes:
    """Write a new random secret to ``path`` (mode 0600) unless one is there; return the secret
    in the file. Safe against a concurrent creator: exactly one file wins and both read it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_file(path)
    except OSError as e:
        raise SecretError(f"cannot create the cluster secret file {path}: {e.strerror or e}") from None
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(SECRET_BYTES) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return read_file(path)


def for_node(cfg: NodeConfig) -> bytes:
    if cfg.security.secret is not None:
        return parse_hex(cfg.security.secret, "security.secret")
    if cfg.security.secret_file is not None:
        return read_file(cfg.security.secret_file)
    return generate_file(cfg.base_dir / SECRET_FILE)


def for_client(secret_file: Path | None, cluster_dir: Path | None, environ: Mapping[str, str]) -> bytes:
    if secret_file is not None:
        return read_file(secret_file)
    if cluster_dir is not None:
        return read_file(cluster_dir / SECRET_FILE)
    if environ.get(ENV_SECRET):
        return parse_hex(environ[ENV_SECRET], ENV_SECRET)
    default = DEFAULT_NODE_BASE_DIR / SECRET_FILE
    if default.exists():
        return read_file(default)
    raise SecretError(f"no cluster secret: give --secret-file, set {ENV_SECRET}, or run where ./{default} is")


_BY_ADDRESS: dict[str, bytes] = {}


def remember(addresses: Iterable[str], key: bytes) -> None:
    """Make ``key`` the secret of these node addresses for clients of this process."""
    for address in addresses:
        _BY_ADDRESS[address] = key


def for_address(address: str, environ: Mapping[str, str]) -> bytes | None:
    """The secret a client should use for ``address`` when it was given none: a remembered local
    cluster's, else the environment's, else the default single node's, else None."""
    key = _BY_ADDRESS.get(address)
    if key is not None:
        return key
    try:
        return for_client(None, None, environ)
    except SecretError:
        return None
