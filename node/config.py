"""Node configuration: one table of settings, three sources, one precedence rule.

Precedence (later wins): built-in defaults < TOML file (``--config``) < ``DURASTATE_*`` environment
variables < command-line flags. Unknown keys in the file and unknown ``DURASTATE_*`` variables are
errors, as are values of the wrong type. Loading never touches the disk beyond reading the file;
:func:`preflight` checks the base dir and ports without creating anything.

The cluster secret (``security.secret``, hex, or ``security.secret_file``) is never printed:
``to_toml`` says that it is set, not what it is. A node that binds a non-loopback address must be
given one explicitly (a loopback-only node makes its own, see node/secret.py).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bifrost.limits import DEFAULT_MAX_RECORD_BYTES
from node.ports import LOOPBACK, Ports, port_in_use
from node.secret import SecretError, parse_hex

ENV_PREFIX = "DURASTATE_"
ROLES = ("metadata", "log-server", "worker", "admin", "http-ingress")
# A cluster that only runs the log (its chaos runs and benchmarks): no partition processor
# appends to the logs, so whatever is in them was appended by the workload.
LOG_ONLY_ROLES = ("metadata", "log-server", "admin")
METADATA_BACKENDS = ("local", "etcd")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")


class ConfigError(Exception):
    """A configuration problem the user must fix; the CLI prints it on one line and exits 2."""


@dataclass(frozen=True, slots=True)
class MetadataConfig:
    backend: str = "local"
    # etcd members of the metadata cluster, name -> peer URL; needed when this node runs a member.
    etcd_initial_cluster: dict[str, str] = field(default_factory=dict)
    # Client endpoints ("host:port") this node talks to; its own member first.
    etcd_endpoints: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class BifrostConfig:
    # Logs provisioned when the cluster is first created (the first node to start decides).
    num_logs: int = 4
    replication: int = 1
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES


@dataclass(frozen=True, slots=True)
class SecurityConfig:
    # The cluster secret as hex text (from DURASTATE_SECURITY_SECRET or the file), or a file
    # holding it; with neither, a loopback-only node uses <base_dir>/cluster.secret.
    secret: str | None = field(default=None, repr=False)
    secret_file: Path | None = None

    @property
    def explicit(self) -> bool:
        return self.secret is not None or self.secret_file is not None


@dataclass(frozen=True, slots=True)
class NodeConfig:
    node_name: str = "n1"
    base_dir: Path = Path("durastate-data")
    cluster_name: str = "durastate"
    # Host other nodes and clients use to reach this node; bind address too.
    address: str = LOOPBACK
    roles: tuple[str, ...] = ROLES
    ports: Ports = field(default_factory=Ports)
    metadata: MetadataConfig = field(default_factory=MetadataConfig)
    bifrost: BifrostConfig = field(default_factory=BifrostConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)

    def runs_etcd_member(self) -> bool:
        return "metadata" in self.roles and self.metadata.backend == "etcd"

    def to_toml(self) -> str:
        """The effective configuration, in the file format it was read from."""
        q = json.dumps  # TOML basic strings accept JSON's escapes
        lines = [
            f"node_name = {q(self.node_name)}",
            f"base_dir = {q(str(self.base_dir))}",
            f"cluster_name = {q(self.cluster_name)}",
            f"address = {q(self.address)}",
            f"roles = {q(list(self.roles))}",
            "",
            "[ports]",
            *(f"{k} = {v}" for k, v in self.ports.as_dict().items()),
            "",
            "[metadata]",
            f"backend = {q(self.metadata.backend)}",
            f"etcd_endpoints = {q(self.metadata.etcd_endpoints)}",
            "",
            "",
            "[bifrost]",
            *(f"{k} = {v}" for k, v in asdict(self.bifrost).items()),
            "",
            "[security]",
            *([f"secret_file = {q(str(self.security.secret_file))}"] if self.security.secret_file else []),
            *(["# secret: set, not printed"] if self.security.secret is not None else []),
            "",
            "[metadata.etcd_initial_cluster]",
            *(f"{q(k)} = {q(v)}" for k, v in self.metadata.etcd_initial_cluster.items()),
        ]
        return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class _Setting:
    path: tuple[str, ...]  # position in the TOML file
    kind: str  # str | path | port | roles | backend | name | str_map | str_list

    @property
    def env(self) -> str:
        return ENV_PREFIX + "_".join(self.path).upper()

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


SETTINGS: tuple[_Setting, ...] = (
    _Setting(("node_name",), "name"),
    _Setting(("base_dir",), "path"),
    _Setting(("cluster_name",), "name"),
    _Setting(("address",), "str"),
    _Setting(("roles",), "roles"),
    *(_Setting(("ports", p), "port") for p in Ports().as_dict()),
    _Setting(("metadata", "backend"), "backend"),
    _Setting(("metadata", "etcd_initial_cluster"), "str_map"),
    _Setting(("metadata", "etcd_endpoints"), "str_list"),
    *(_Setting(("bifrost", k), "posint") for k in asdict(BifrostConfig())),
    _Setting(("security", "secret"), "secret"),
    _Setting(("security", "secret_file"), "path"),
)
_BY_PATH = {s.path: s for s in SETTINGS}
_BY_ENV = {s.env: s for s in SETTINGS}
# Variables that select the file rather than a setting.
_ENV_NOT_SETTINGS = {ENV_PREFIX + "CONFIG"}


def _check(setting: _Setting, value: Any, source: str) -> Any:
    where = f"{setting.dotted} (from {source})"
    match setting.kind:
        case "str":
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{where} must be a non-empty string, got {value!r}")
            return value
        case "name":
            if not isinstance(value, str) or not _NAME_RE.match(value):
                raise ConfigError(f"{where} must be a name of letters, digits, '-' or '_', got {value!r}")
            return value
        case "secret":
            # Never echo the value: it is the cluster's only key.
            if not isinstance(value, str):
                raise ConfigError(f"{where} must be a string of hex digits")
            try:
                parse_hex(value, where)
            except SecretError as e:
                raise ConfigError(str(e)) from None
            return value.strip()
        case "path":
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{where} must be a path string, got {value!r}")
            return Path(value)
        case "port":
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
                raise ConfigError(f"{where} must be an integer port in 1..65535, got {value!r}")
            return value
        case "roles":
            if not isinstance(value, list) or not all(isinstance(r, str) for r in value) or not value:
                raise ConfigError(
                    f"{where} must be a non-empty list of roles from {list(ROLES)}, got {value!r}"
                )
            unknown = [r for r in value if r not in ROLES]
            if unknown:
                raise ConfigError(f"{where} has unknown roles {unknown}; known roles are {list(ROLES)}")
            return tuple(dict.fromkeys(value))
        case "posint":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{where} must be a positive integer, got {value!r}")
            return value
        case "backend":
            if value not in METADATA_BACKENDS:
                raise ConfigError(f"{where} must be one of {list(METADATA_BACKENDS)}, got {value!r}")
            return value
        case "str_map":
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise ConfigError(f"{where} must be a table of strings, got {value!r}")
            return dict(value)
        case "str_list":
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise ConfigError(f"{where} must be a list of strings, got {value!r}")
            return list(value)
    raise AssertionError(f"unhandled setting kind {setting.kind}")


def _parse_env(setting: _Setting, raw: str) -> Any:
    """Environment values are strings; turn them into what the TOML file would hold."""
    match setting.kind:
        case "port" | "posint":
            try:
                return int(raw)
            except ValueError:
                raise ConfigError(f"{setting.env} must be an integer, got {raw!r}") from None
        case "roles" | "str_list":
            return [part.strip() for part in raw.split(",") if part.strip()]
        case "str_map":
            pairs = [part.split("=", 1) for part in raw.split(",") if part.strip()]
            if any(len(p) != 2 for p in pairs):
                raise ConfigError(f"{setting.env} must look like name=url,name=url, got {raw!r}")
            return {k.strip(): v.strip() for k, v in pairs}
    return raw


def _flatten_file(
    data: Mapping[str, Any], source: str, prefix: tuple[str, ...] = ()
) -> dict[tuple[str, ...], Any]:
    out: dict[tuple[str, ...], Any] = {}
    for key, value in data.items():
        path = (*prefix, key)
        if path in _BY_PATH:
            out[path] = value
        elif isinstance(value, dict) and any(p[: len(path)] == path for p in _BY_PATH):
            out.update(_flatten_file(value, source, path))
        else:
            raise ConfigError(f"unknown key {'.'.join(path)!r} in {source}")
    return out


def read_file(path: Path) -> dict[tuple[str, ...], Any]:
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    return _flatten_file(data, str(path))


def read_env(environ: Mapping[str, str]) -> dict[tuple[str, ...], Any]:
    out: dict[tuple[str, ...], Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name in _ENV_NOT_SETTINGS:
            continue
        setting = _BY_ENV.get(name)
        if setting is None:
            known = ", ".join(sorted(_BY_ENV))
            raise ConfigError(f"unknown environment variable {name}; known: {known}")
        out[setting.path] = _parse_env(setting, raw)
    return out


def build(layers: list[tuple[str, Mapping[tuple[str, ...], Any]]]) -> NodeConfig:
    """Fold (source name, settings) layers, lowest precedence first, into a validated config."""
    values: dict[tuple[str, ...], Any] = {}
    for source, layer in layers:
        for path, raw in layer.items():
            values[path] = _check(_BY_PATH[path], raw, source)
    cfg = NodeConfig()
    top = {p[0]: v for p, v in values.items() if len(p) == 1}
    cfg = replace(cfg, **top)
    ports = {p[1]: v for p, v in values.items() if p[0] == "ports"}
    if ports:
        cfg = replace(cfg, ports=replace(cfg.ports, **ports))
    meta = {p[1]: v for p, v in values.items() if p[0] == "metadata"}
    if meta:
        cfg = replace(cfg, metadata=replace(cfg.metadata, **meta))
    bifrost = {p[1]: v for p, v in values.items() if p[0] == "bifrost"}
    if bifrost:
        cfg = replace(cfg, bifrost=replace(cfg.bifrost, **bifrost))
    security = {p[1]: v for p, v in values.items() if p[0] == "security"}
    if security:
        cfg = replace(cfg, security=replace(cfg.security, **security))
    _check_consistency(cfg)
    return cfg


def _check_consistency(cfg: NodeConfig) -> None:
    used = [p for p in cfg.ports.as_dict().items() if p[0] in _ports_in_use_by(cfg)]
    seen: dict[int, str] = {}
    for name, port in used:
        if port in seen:
            raise ConfigError(f"ports.{name} and ports.{seen[port]} are both {port}")
        seen[port] = name
    if cfg.security.secret is not None and cfg.security.secret_file is not None:
        raise ConfigError("give security.secret or security.secret_file, not both")
    if not cfg.security.explicit and not is_loopback(cfg.address):
        raise ConfigError(
            f"address {cfg.address!r} is reachable from other machines: give the cluster secret "
            "with security.secret_file (--secret-file) or DURASTATE_SECURITY_SECRET"
        )
    if cfg.metadata.backend == "etcd":
        if not cfg.metadata.etcd_endpoints and not cfg.runs_etcd_member():
            raise ConfigError(
                "metadata.backend = 'etcd' needs metadata.etcd_endpoints or the 'metadata' role"
            )
        if cfg.runs_etcd_member() and cfg.metadata.etcd_initial_cluster:
            if cfg.node_name not in cfg.metadata.etcd_initial_cluster:
                raise ConfigError(
                    f"metadata.etcd_initial_cluster must name this node ({cfg.node_name!r}) to run its member"
                )


def is_loopback(host: str) -> bool:
    """Only loopback addresses count; any name but localhost may resolve elsewhere."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _ports_in_use_by(cfg: NodeConfig) -> list[str]:
    names = ["node", "admin", "ingress", "data"]
    if cfg.runs_etcd_member():
        names += ["etcd_client", "etcd_peer"]
    return names


def load(
    config_file: Path | None,
    environ: Mapping[str, str],
    flags: Mapping[tuple[str, ...], Any],
) -> NodeConfig:
    layers: list[tuple[str, Mapping[tuple[str, ...], Any]]] = []
    file_from_env = environ.get(ENV_PREFIX + "CONFIG")
    if config_file is None and file_from_env:
        config_file = Path(file_from_env)
    if config_file is not None:
        layers.append((str(config_file), read_file(config_file)))
    layers.append(("environment", read_env(environ)))
    layers.append(("command line", flags))
    return build(layers)


def preflight(cfg: NodeConfig) -> None:
    """Checks that must pass before the node writes anything: base dir usable, ports free."""
    base = cfg.base_dir
    if base.exists():
        if not base.is_dir():
            raise ConfigError(f"base_dir {base} exists and is not a directory")
        if not os.access(base, os.R_OK | os.W_OK | os.X_OK):
            raise ConfigError(f"base_dir {base} is not readable and writable by this user")
    else:
        parent = next((p for p in base.absolute().parents if p.exists()), None)
        if parent is None or not parent.is_dir():
            raise ConfigError(f"base_dir {base} cannot be created: {parent} is not a directory")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise ConfigError(f"base_dir {base} cannot be created: {parent} is not writable")
    for name in _ports_in_use_by(cfg):
        port = getattr(cfg.ports, name)
        if port_in_use(port, cfg.address):
            raise ConfigError(f"ports.{name} = {port} is already in use on {cfg.address}")
