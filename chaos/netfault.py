"""Network faults between the nodes of a local cluster, from the outside: a private network
namespace, cgroups and iptables. Nothing in node/ knows about it.

Why not ports alone: every node listens on distinct ports of 127.0.0.1, so dropping packets
*to* a node's data and etcd ports cuts its inbound side; but the connections it initiates
itself (sequencer -> log-servers, etcd client -> the other members) get their replies on
ephemeral ports, so the node could still write to the others. A loopback packet carries no
address that tells its sender, so the harness puts each node's process group in its own
cgroup v2 and matches the *sender* with ``-m cgroup --path``. Isolating node X is then:

    OUTPUT: from X's cgroup with source port = X's gRPC port -> ACCEPT (clients still get answers)
    OUTPUT: from X's cgroup                                 -> DROP   (X cannot reach anyone)
    INPUT:  to X's data / etcd client / etcd peer ports     -> DROP   (no one reaches X)

Latency and slow log-servers use the same trick with NAT: connections *from node cgroups* to
a node's data port are DNAT-ed to a `chaos.proxy` listener relaying to that port, so toxics
apply to node-to-node log traffic while the proxy's own upstream connection (from the
harness, outside the node cgroups) goes straight through.

All of it only inside a private network namespace (``unshare -n``): the rules never touch the
host's firewall. `probe()` says why a feature is unavailable; the harness then skips those
nemeses with that reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CHAIN_IN = "DSCHAOS_IN"
CHAIN_OUT = "DSCHAOS_OUT"
NETNS_ENV = "DSCHAOS_PRIVATE_NETNS"


def _netns_id() -> str | None:
    try:
        return os.readlink("/proc/self/ns/net")
    except OSError:
        return None


def in_private_netns() -> bool:
    """True inside a namespace that `netns_command` made for the harness.

    Comparing with pid 1's namespace is not reliable (in a sandbox pid 1 may itself live in
    another namespace), so the namespace is marked when it is created and the mark is valid
    only where the namespace id still matches.
    """
    marker = os.environ.get(NETNS_ENV)
    return marker is not None and marker == _netns_id()


def can_unshare() -> str | None:
    """None if ``unshare -n`` can give us a private network namespace, else why not."""
    if os.geteuid() != 0:
        return "not root: unshare -n and iptables need CAP_NET_ADMIN"
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def netns_command(argv: list[str]) -> list[str]:
    """``argv`` run in a fresh network namespace whose loopback is up."""
    script = f'ip link set lo up && {NETNS_ENV}="$(readlink /proc/self/ns/net)" exec "$0" "$@"'
    return ["unshare", "-n", "--", "sh", "-c", script, *argv]


def _cgroup2_root() -> Path | None:
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    for line in mounts:
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "cgroup2":
            return Path(parts[1])
    return None


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=10)


class NetFaults:
    """Per-node cgroups plus iptables chains in the current (private) network namespace."""

    def __init__(self, run_id: str) -> None:
        self._run_id = run_id
        self._root: Path | None = None
        self._nat_rules: list[list[str]] = []
        self.reason: str | None = None  # why partitions are unavailable, None if they work
        self.nat_reason: str | None = None  # why proxy routing is unavailable

    # ---- set-up and tear-down -------------------------------------------------------------

    def probe(self) -> None:
        """Create the cgroup root and chains; record why not in ``reason``/``nat_reason``."""
        self.reason = self._probe()
        self.nat_reason = self.reason or self._probe_nat()

    def _probe(self) -> str | None:
        if os.geteuid() != 0:
            return "not root: iptables needs CAP_NET_ADMIN"
        if not in_private_netns():
            return "not in a private network namespace (run through `durastate chaos`, which re-executes under `unshare -n`)"
        if shutil.which("iptables") is None:
            return "iptables is not installed"
        base = _cgroup2_root()
        if base is None:
            return "no cgroup v2 hierarchy mounted (needed to tell a node's packets apart on loopback)"
        root = base / f"durastate-chaos-{self._run_id}"
        try:
            root.mkdir(exist_ok=True)
        except OSError as e:
            return f"cannot create a cgroup under {base}: {e.strerror}"
        self._root = root
        for chain, hook in ((CHAIN_IN, "INPUT"), (CHAIN_OUT, "OUTPUT")):
            for cmd in (["-N", chain], ["-I", hook, "-j", chain]):
                r = _run("iptables", *cmd)
                if r.returncode != 0:
                    return f"iptables {' '.join(cmd)} failed: {r.stderr.strip()}"
        # The cgroup match is the one piece that might be missing from a kernel.
        self._cgroup("probe")
        r = _run(
            "iptables", "-A", CHAIN_OUT, "-m", "cgroup", "--path", self._cgroup_path("probe"), "-j", "RETURN"
        )
        if r.returncode != 0:
            return f"iptables cgroup match unavailable: {r.stderr.strip()}"
        _run("iptables", "-F", CHAIN_OUT)
        return None

    def _probe_nat(self) -> str | None:
        r = _run("iptables", "-t", "nat", "-L", "OUTPUT", "-n")
        if r.returncode != 0:
            return f"iptables nat table unavailable: {r.stderr.strip()}"
        return None

    def close(self) -> None:
        """Remove every rule and cgroup this object made (the namespace dies with us anyway,
        but the cgroups live in the host's hierarchy)."""
        if self._root is None:
            return
        for rule in self._nat_rules:
            _run("iptables", "-t", "nat", "-D", *rule)
        for chain, hook in ((CHAIN_IN, "INPUT"), (CHAIN_OUT, "OUTPUT")):
            _run("iptables", "-D", hook, "-j", chain)
            _run("iptables", "-F", chain)
            _run("iptables", "-X", chain)
        parent = self._root.parent / "cgroup.procs"
        for child in sorted(self._root.iterdir()) if self._root.exists() else []:
            if child.is_dir():
                # Anything still inside (a process that outlived the cluster) goes back to
                # the root cgroup so the directory can be removed.
                for pid in (child / "cgroup.procs").read_text().split():
                    try:
                        parent.write_text(pid)
                    except OSError:
                        pass
                try:
                    child.rmdir()
                except OSError:
                    pass
        try:
            self._root.rmdir()
        except OSError:
            pass
        self._root = None

    # ---- cgroups ---------------------------------------------------------------------------

    def _cgroup_path(self, node: str) -> str:
        assert self._root is not None
        return f"{self._root.name}/{node}"

    def _cgroup(self, node: str) -> Path:
        assert self._root is not None
        path = self._root / node
        path.mkdir(exist_ok=True)
        return path

    def adopt(self, node: str, pids: list[int]) -> None:
        """Put a node's processes in its cgroup (children forked later inherit it)."""
        if self._root is None:
            return
        procs = self._cgroup(node) / "cgroup.procs"
        for pid in pids:
            try:
                procs.write_text(str(pid))
            except OSError:
                pass  # exited meanwhile

    # ---- partitions ------------------------------------------------------------------------

    def _isolation_rules(
        self, node: str, grpc_port: int, peer_ports: list[int]
    ) -> list[tuple[str, list[str]]]:
        cg = self._cgroup_path(node)
        ports = ",".join(str(p) for p in peer_ports)
        return [
            (
                CHAIN_OUT,
                ["-m", "cgroup", "--path", cg, "-p", "tcp", "--sport", str(grpc_port), "-j", "ACCEPT"],
            ),
            (CHAIN_OUT, ["-m", "cgroup", "--path", cg, "-j", "DROP"]),
            (CHAIN_IN, ["-p", "tcp", "-m", "multiport", "--dports", ports, "-j", "DROP"]),
        ]

    def isolate(self, node: str, grpc_port: int, peer_ports: list[int]) -> None:
        """Cut ``node`` off from every other node; clients keep reaching its gRPC port."""
        for chain, rule in self._isolation_rules(node, grpc_port, peer_ports):
            r = _run("iptables", "-A", chain, *rule)
            if r.returncode != 0:
                raise RuntimeError(f"iptables -A {chain} {' '.join(rule)}: {r.stderr.strip()}")

    def heal(self, node: str, grpc_port: int, peer_ports: list[int]) -> None:
        for chain, rule in self._isolation_rules(node, grpc_port, peer_ports):
            _run("iptables", "-D", chain, *rule)

    def heal_all(self) -> None:
        if self._root is not None:
            _run("iptables", "-F", CHAIN_IN)
            _run("iptables", "-F", CHAIN_OUT)

    # ---- routing through proxies -----------------------------------------------------------

    def route(self, dst_port: int, proxy_port: int) -> None:
        """New connections from any node to ``dst_port`` go to ``proxy_port`` instead."""
        assert self._root is not None
        rule = [
            "OUTPUT", "-m", "cgroup", "--path", self._root.name, "-p", "tcp", "--dport", str(dst_port),
            "-j", "DNAT", "--to-destination", f"127.0.0.1:{proxy_port}",
        ]  # fmt: skip
        r = _run("iptables", "-t", "nat", "-A", *rule)
        if r.returncode != 0:
            raise RuntimeError(f"iptables -t nat -A {' '.join(rule)}: {r.stderr.strip()}")
        self._nat_rules.append(rule)
