"""Every port durastate listens on, in one place.

A single node uses the defaults. Node ``k`` (1-based) of a local cluster shifts every port by
``(k - 1) * NODE_PORT_STRIDE`` so that N nodes fit on one machine without a port map.
"""

from __future__ import annotations

import random
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

DEFAULT_INGRESS_PORT = 8080
DEFAULT_ADMIN_PORT = 9070
DEFAULT_NODE_PORT = 5122
DEFAULT_ETCD_CLIENT_PORT = 2379
DEFAULT_ETCD_PEER_PORT = 2380
# The log's data path between nodes (framed TCP, see bifrost/net/framing.py).
DEFAULT_DATA_PORT = 5123

# 10 keeps the etcd client and peer ports of neighbouring nodes apart (2379/2380, 2389/2390, ...).
NODE_PORT_STRIDE = 10

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Ports:
    ingress: int = DEFAULT_INGRESS_PORT
    admin: int = DEFAULT_ADMIN_PORT
    node: int = DEFAULT_NODE_PORT
    etcd_client: int = DEFAULT_ETCD_CLIENT_PORT
    etcd_peer: int = DEFAULT_ETCD_PEER_PORT
    data: int = DEFAULT_DATA_PORT

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def shifted(self, offset: int) -> Ports:
        return Ports(**{name: port + offset for name, port in self.as_dict().items()})


def ports_for_node(index: int, base: Ports | None = None) -> Ports:
    """Ports of the ``index``-th node (1-based) of a local cluster."""
    return (base or Ports()).shifted((index - 1) * NODE_PORT_STRIDE)


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """Distinct ports free right now, chosen *below* the kernel's ephemeral range: a port the
    kernel hands out as port 0 is soon reused as the source port of some outgoing connection,
    and a server started a moment later then fails to bind it."""
    low, _ = _ephemeral_range()
    candidates = list(range(10000, max(10001, low)))
    random.SystemRandom().shuffle(candidates)
    chosen: list[int] = []
    for port in candidates:
        if not port_in_use(port, host):
            chosen.append(port)
            if len(chosen) == count:
                return chosen
    raise OSError(f"fewer than {count} free ports on {host} below {low}")


PORTS_PER_NODE = len(Ports().as_dict())


def free_node_ports(host: str = LOOPBACK) -> Ports:
    return Ports(*free_ports(PORTS_PER_NODE, host))


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host, port))
    except OSError:
        return True
    finally:
        s.close()
    return False
