"""The ``durastate`` command line.

Exit status: 0 success, 2 usage or configuration error (nothing was written), 1 operational
failure; every error is one line on stderr. Every command that prints data has ``--json``; human
output is a table. Commands that talk to a node find the cluster secret as node/secret.py says.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from metadata import MetadataError
from node import reserved_keys, secret
from node.client import (
    InvalidRequest,
    LogClient,
    NodeClient,
    NodeError,
    NodeUnreachable,
    OutcomeUnknown,
    Refused,
    Unauthenticated,
    VersionMismatch,
    put_with_retry,
)
from node.config import LOG_ONLY_ROLES, ROLES, ConfigError, load, preflight
from node.local_cluster import ClusterError, ClusterNode, LocalCluster

DEFAULT_CLUSTER_DIR = Path("durastate-cluster")
DEFAULT_NODE_ADDRESS = "127.0.0.1:5122"


class CliError(Exception):
    """Operational failure: printed on one line (plus detail), exit status 1."""


class UsageError(Exception):
    """Usage problem: printed on one line, exit status 2."""


# ---- output --------------------------------------------------------------------------------


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [[("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _ports_text(ports: dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in ports.items())


# ---- server --------------------------------------------------------------------------------

_SERVER_FLAGS: dict[str, tuple[str, ...]] = {
    "base_dir": ("base_dir",),
    "node_name": ("node_name",),
    "cluster_name": ("cluster_name",),
    "address": ("address",),
    "roles": ("roles",),
    "ingress_port": ("ports", "ingress"),
    "admin_port": ("ports", "admin"),
    "node_port": ("ports", "node"),
    "etcd_client_port": ("ports", "etcd_client"),
    "etcd_peer_port": ("ports", "etcd_peer"),
    "data_port": ("ports", "data"),
    "metadata_backend": ("metadata", "backend"),
    "secret_file": ("security", "secret_file"),
}


def cmd_server(args: argparse.Namespace) -> int:
    flags: dict[tuple[str, ...], Any] = {}
    for attr, path in _SERVER_FLAGS.items():
        value = getattr(args, attr)
        if value is not None:
            flags[path] = [r.strip() for r in value.split(",")] if attr == "roles" else value
    cfg = load(args.config, os.environ, flags)
    if args.print_config:
        print(cfg.to_toml(), end="")
        return 0
    preflight(cfg)
    try:
        secret.for_node(cfg)  # a single node makes its secret now, before anything else is written
    except secret.SecretError as e:
        raise ConfigError(str(e)) from None

    from node import logs, server

    logs.setup(cfg.node_name)
    try:
        _run_loop(server.run(cfg))
    except server.NodeStartError as e:
        raise CliError(str(e)) from None
    except MetadataError as e:  # e.g. a nodes config that does not decode (the message names the key)
        raise CliError(f"cannot start: {e}") from None
    return 0


def _run_loop(coro: Any) -> None:
    try:
        import uvloop
    except ImportError:  # uvloop is optional: plain asyncio works, just slower
        import asyncio

        asyncio.run(coro)
    else:
        uvloop.run(coro)


# ---- cluster -------------------------------------------------------------------------------


def _cluster(args: argparse.Namespace) -> LocalCluster:
    return LocalCluster.load(args.base_dir)


def cmd_cluster_up(args: argparse.Namespace) -> int:
    if LocalCluster.exists(args.base_dir):
        cluster = LocalCluster.load(args.base_dir)
        if args.nodes is not None and args.nodes != len(cluster.nodes):
            raise UsageError(
                f"{args.base_dir} holds a cluster of {len(cluster.nodes)} nodes; "
                f"use another --base-dir for {args.nodes}"
            )
        cluster.ensure_secret()
    else:
        cluster = LocalCluster.create(args.base_dir, args.nodes or 3, args.free_ports, _roles(args.roles))
    started = []
    for node in cluster.nodes:
        if not cluster.alive(node):
            cluster.spawn(node)
            started.append(node)
            print(f"started {node.name} (pid {cluster.pid(node)})", file=sys.stderr)
    cluster.wait_healthy(started)
    return _print_status(cluster, args.json)


def _roles(flag: str | None) -> tuple[str, ...]:
    if flag is None:
        return ROLES
    roles = tuple(r.strip() for r in flag.split(",") if r.strip())
    unknown = sorted(set(roles) - set(ROLES))
    if not roles or unknown:
        raise UsageError(f"--roles takes a comma-separated subset of {', '.join(ROLES)}; got {flag!r}")
    return roles


def cmd_cluster_status(args: argparse.Namespace) -> int:
    return _print_status(_cluster(args), args.json)


def cmd_cluster_kill(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    node = cluster.node(args.node)
    cluster.signal(node, signal.SIGKILL)
    print(f"killed {node.name} (pid {cluster.pid(node)}) and its etcd member")
    return 0


def cmd_cluster_start(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    node = cluster.node(args.node)
    cluster.spawn(node)
    cluster.wait_healthy([node])
    return _print_status(cluster, args.json, only=[node])


def cmd_cluster_down(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    for node in cluster.nodes:
        cluster.stop(node)
        print(f"stopped {node.name}")
    return 0


def cluster_status(cluster: LocalCluster) -> dict[str, Any]:
    infos: dict[str, Any] = {}
    for node in cluster.nodes:
        if cluster.alive(node):
            try:
                with NodeClient(node.grpc_address, timeout_s=3.0, secret=cluster.secret) as client:
                    infos[node.name] = client.node_info()
            except NodeUnreachable:
                pass
    generations = {name: info.generation for name, info in infos.items()}
    if len(generations) < len(cluster.nodes) and infos:
        generations = {**_generations_from_metadata(cluster, list(infos)), **generations}
    leader = next((info.metadata_leader for info in infos.values() if info.metadata_leader), None)
    return {
        "nodes": [
            {
                "name": node.name,
                "pid": cluster.pid(node),
                "alive": cluster.alive(node),
                "generation": generations.get(node.name),
                "ports": node.ports.as_dict(),
            }
            for node in cluster.nodes
        ],
        "metadata_leader": leader,
    }


def _generations_from_metadata(cluster: LocalCluster, answering: list[str]) -> dict[str, int]:
    from metadata.records import NODES_CONFIG_KEY, NodesConfig, decode

    for name in answering:
        try:
            with NodeClient(cluster.node(name).grpc_address, timeout_s=3.0, secret=cluster.secret) as client:
                found = client.get(NODES_CONFIG_KEY)
        except NodeUnreachable:
            continue
        if found is not None:
            try:
                nodes_config = decode(NodesConfig, found.value, NODES_CONFIG_KEY)
            except MetadataError:
                return {}  # shown as unknown; the nodes log what is wrong with it
            return {n: rec.generation for n, rec in nodes_config.nodes.items()}
    return {}


def _print_status(cluster: LocalCluster, as_json: bool, only: list[ClusterNode] | None = None) -> int:
    status = cluster_status(cluster)
    if only is not None:
        names = {n.name for n in only}
        status["nodes"] = [n for n in status["nodes"] if n["name"] in names]
    if as_json:
        print(json.dumps(status, indent=2))
        return 0
    print_table(
        ["node", "pid", "alive", "generation", "ports"],
        [
            [n["name"], n["pid"], n["alive"], n["generation"], _ports_text(n["ports"])]
            for n in status["nodes"]
        ],
    )
    print(f"metadata leader: {status['metadata_leader'] or 'unknown'}")
    return 0


# ---- metadata ------------------------------------------------------------------------------


def _node_address(args: argparse.Namespace) -> str:
    if args.address:
        if args.node:
            raise UsageError("give --node (with --base-dir) or --address, not both")
        return args.address
    if args.base_dir is None:
        if args.node:
            raise UsageError("--node needs --base-dir of a local cluster")
        return DEFAULT_NODE_ADDRESS
    cluster = LocalCluster.load(args.base_dir)
    if args.node:
        return cluster.node(args.node).grpc_address
    for node in cluster.nodes:
        if cluster.alive(node):
            return node.grpc_address
    raise CliError(f"no node of the cluster in {args.base_dir} is running")


def _client(args: argparse.Namespace, timeout_s: float = 5.0) -> NodeClient:
    address = _node_address(args)
    try:
        key = secret.for_client(args.secret_file, args.base_dir, os.environ)
    except secret.SecretError as e:
        raise CliError(str(e)) from None
    return NodeClient(address, timeout_s=timeout_s, secret=key)


def cmd_metadata_get(args: argparse.Namespace) -> int:
    with _client(args, args.timeout) as client:
        found = client.get(args.key)
    if found is None:
        if args.json:
            print(json.dumps({"key": args.key, "found": False}))
            return 0
        raise CliError(f"key {args.key!r} not found")
    # A reserved key shows its record as JSON: what `metadata put KEY JSON --force` takes back.
    text = reserved_keys.to_json(args.key, found.value) or found.value.decode(
        "utf-8", errors="backslashreplace"
    )
    if args.json:
        print(json.dumps({"key": args.key, "found": True, "version": found.version, "value": text}))
    else:
        print_table(["key", "version", "value"], [[args.key, found.version, text]])
    return 0


def cmd_metadata_put(args: argparse.Namespace) -> int:
    if args.expect_version is not None and args.expect_version < 1:
        raise UsageError(f"--expect-version must be >= 1 (versions start at 1), got {args.expect_version}")
    value = args.value.encode()
    if args.force:
        value = reserved_keys.from_json(args.key, args.value) or value
    with _client(args, min(args.timeout, 5.0)) as client:
        try:
            version = put_with_retry(client, args.key, value, args.expect_version, args.timeout, args.force)
        except VersionMismatch as e:
            raise CliError(str(e)) from None
        except OutcomeUnknown as e:
            raise CliError(f"{e}; check with `durastate metadata get {args.key}`") from None
    if args.json:
        print(json.dumps({"key": args.key, "version": version}))
    else:
        print(f"{args.key} version {version}")
    return 0


# ---- log -----------------------------------------------------------------------------------


def _log_client(args: argparse.Namespace) -> tuple[NodeClient, LogClient]:
    node = _client(args)
    return node, LogClient(node)


def cmd_log_append(args: argparse.Namespace) -> int:
    records = [p.encode() for p in args.payloads]
    for path in args.files:  # records too large for a command-line argument (128 KiB)
        try:
            records.append(path.read_bytes())
        except OSError as e:
            raise UsageError(f"cannot read --file {path}: {e.strerror or e}") from None
    if not records:
        raise UsageError("give at least one payload or --file")
    node, client = _log_client(args)
    with node:
        first = client.append(args.log, records)
    lsns = list(range(first, first + len(records)))
    if args.json:
        print(json.dumps({"log": args.log, "lsns": lsns}))
    else:
        print("\n".join(str(lsn) for lsn in lsns))
    return 0


def cmd_log_read(args: argparse.Namespace) -> int:
    if args.from_lsn < 1:
        raise UsageError(f"--from must be >= 1 (LSNs start at 1), got {args.from_lsn}")
    node, client = _log_client(args)
    with node:
        for entry in client.read(args.log, args.from_lsn, args.follow):
            if entry.trim_gap_to:
                line = {"lsn": entry.lsn, "trim_gap_to": entry.trim_gap_to}
                text = f"{entry.lsn} <trimmed up to {entry.trim_gap_to}>"
            else:
                payload = entry.payload.decode("utf-8", errors="backslashreplace")
                line, text = {"lsn": entry.lsn, "payload": payload}, f"{entry.lsn} {payload}"
            print(json.dumps(line) if args.json else text, flush=args.follow)
    return 0


def cmd_log_tail(args: argparse.Namespace) -> int:
    node, client = _log_client(args)
    with node:
        tail, sealed = client.tail(args.log)
    if args.json:
        print(json.dumps({"log": args.log, "next_lsn": tail, "sealed": sealed}))
    else:
        print(f"{tail}{' (sealed)' if sealed else ''}")
    return 0


def _print_chain(chain: Any, as_json: bool) -> None:
    segments = [
        {
            "base_lsn": s.base_lsn,
            "index": s.index,
            "loglet": s.loglet_id or None,
            "sequencer": s.sequencer or None,
            "nodeset": list(s.nodeset),
            "replication": s.replication,
            "sealed": s.sealed,
        }
        for s in chain.segments
    ]
    if as_json:
        print(json.dumps({"segments": segments, "version": chain.version}, indent=2))
        return
    print_table(
        ["base_lsn", "loglet", "sequencer", "nodeset", "replication", "sealed"],
        [
            [
                s["base_lsn"],
                s["loglet"],
                s["sequencer"],
                ",".join(s["nodeset"]),
                s["replication"],
                s["sealed"],
            ]
            for s in segments
        ],
    )


def cmd_log_chain(args: argparse.Namespace) -> int:
    node, client = _log_client(args)
    with node:
        _print_chain(client.chain(args.log), args.json)
    return 0


def cmd_log_trim(args: argparse.Namespace) -> int:
    node, client = _log_client(args)
    with node:
        client.trim(args.log, args.up_to)
    print(f"log {args.log} trimmed up to {args.up_to}")
    return 0


def cmd_log_seal(args: argparse.Namespace) -> int:
    node, client = _log_client(args)
    with node:
        tail = client.seal(args.log)
    print(f"log {args.log} sealed at {tail}")
    return 0


def cmd_log_reconfigure(args: argparse.Namespace) -> int:
    node, client = _log_client(args)
    with node:
        _print_chain(client.reconfigure(args.log), args.json)
    return 0


def _add_node_choice(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base-dir", type=Path, dest="base_dir", help="local cluster dir")
    p.add_argument("--node", help="node of the local cluster to talk to")
    p.add_argument("--address", help=f"node gRPC address (default {DEFAULT_NODE_ADDRESS})")
    p.add_argument(
        "--secret-file",
        type=Path,
        dest="secret_file",
        help="cluster secret (default: the --base-dir cluster's, DURASTATE_SECURITY_SECRET, "
        "or ./durastate-data/cluster.secret)",
    )
    p.add_argument("--json", action="store_true")


# ---- parser --------------------------------------------------------------------------------


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="durastate", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    srv = sub.add_parser("server", help="run a node (a single node with no flags)")
    srv.add_argument("--config", type=Path, help="TOML config file (also DURASTATE_CONFIG)")
    srv.add_argument("--base-dir", dest="base_dir", help="where all durable data lives")
    srv.add_argument("--node-name", dest="node_name")
    srv.add_argument("--cluster-name", dest="cluster_name")
    srv.add_argument("--address", help="host this node binds and advertises")
    srv.add_argument("--roles", help="comma-separated roles")
    for name in ("ingress", "admin", "node", "etcd-client", "etcd-peer", "data"):
        srv.add_argument(f"--{name}-port", dest=f"{name.replace('-', '_')}_port", type=_port)
    srv.add_argument("--metadata-backend", dest="metadata_backend", help="local or etcd")
    srv.add_argument("--secret-file", dest="secret_file", help="file holding the cluster secret (hex)")
    srv.add_argument("--print-config", action="store_true", help="print the effective config and exit")
    srv.set_defaults(func=cmd_server)

    def cluster_cmd(
        name: str, func: Callable[[argparse.Namespace], int], help_: str
    ) -> argparse.ArgumentParser:
        p = cl_sub.add_parser(name, help=help_)
        p.add_argument("--base-dir", type=Path, default=DEFAULT_CLUSTER_DIR, dest="base_dir")
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=func)
        return p

    cl = sub.add_parser("cluster", help="a local cluster of node processes")
    cl_sub = cl.add_subparsers(dest="cluster_command", required=True)
    up = cluster_cmd("up", cmd_cluster_up, "start the cluster's nodes and wait until healthy")
    up.add_argument("--nodes", type=int, default=None, help="number of nodes (default 3)")
    up.add_argument("--free-ports", action="store_true", help="pick free ports instead of the defaults")
    up.add_argument(
        "--roles",
        help=f"roles of every node of a new cluster (default all; {','.join(LOG_ONLY_ROLES)} runs only the log)",
    )
    cluster_cmd("status", cmd_cluster_status, "nodes, pids, generations, metadata leader")
    cluster_cmd("kill", cmd_cluster_kill, "SIGKILL a node and its etcd member").add_argument("node")
    cluster_cmd("start", cmd_cluster_start, "restart a node").add_argument("node")
    cluster_cmd("down", cmd_cluster_down, "stop every node")

    md = sub.add_parser("metadata", help="read and write the metadata store through a node")
    md_sub = md.add_subparsers(dest="metadata_command", required=True)
    for name, func in (("get", cmd_metadata_get), ("put", cmd_metadata_put)):
        p = md_sub.add_parser(name)
        p.add_argument("key")
        if name == "put":
            p.add_argument("value")
            p.add_argument("--expect-version", type=int, dest="expect_version")
            p.add_argument(
                "--force",
                action="store_true",
                help="write a reserved key (nodes config, chains); the value must decode as its "
                "record (JSON as `metadata get` prints it)",
            )
        _add_node_choice(p)
        p.add_argument("--timeout", type=float, default=10.0, help="seconds to keep retrying")
        p.set_defaults(func=func)

    lg = sub.add_parser("log", help="append to, read and administer the replicated logs")
    lg_sub = lg.add_subparsers(dest="log_command", required=True)

    def log_cmd(name: str, func: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        p = lg_sub.add_parser(name, help=help_)
        p.add_argument("log", type=int, help="log id")
        _add_node_choice(p)
        p.set_defaults(func=func)
        return p

    ap = log_cmd("append", cmd_log_append, "append records; prints their LSNs")
    ap.add_argument("payloads", nargs="*")
    ap.add_argument(
        "--file",
        type=Path,
        action="append",
        default=[],
        dest="files",
        help="a record from a file (repeatable)",
    )
    rd = log_cmd("read", cmd_log_read, "print records as 'LSN payload' lines")
    rd.add_argument("--from", dest="from_lsn", type=int, default=1)
    rd.add_argument("--follow", action="store_true", help="keep printing new records")
    log_cmd("tail", cmd_log_tail, "the next LSN to be written")
    log_cmd("chain", cmd_log_chain, "the log's segments, oldest first")
    log_cmd("trim", cmd_log_trim, "drop records up to an LSN").add_argument("up_to", type=int)
    log_cmd("seal", cmd_log_seal, "seal the log (operators)")
    log_cmd("reconfigure", cmd_log_reconfigure, "seal the tail segment and start a new one on this node")

    bench = sub.add_parser("bench", help="benchmarks (real node processes, figures beside the floor)")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    # The benchmarks have their own parsers, imported only when they run (see main): `invoke`
    # serves the checkout's SDK test services, which need restate-sdk, a test dependency that
    # `durastate server` must not need; and a node started with `python -m node.cli` from a
    # directory holding a bench.py would otherwise import that file.
    bench_sub.add_parser(
        "append", add_help=False, help="append latency, throughput and failover of the log"
    )
    bench_sub.add_parser(
        "invoke",
        add_help=False,
        help="invocation latency, throughput and cost through the ingress (--vs-restate: beside Restate)",
    )

    chaos = sub.add_parser(
        "chaos",
        add_help=False,
        help="kill, pause, partition and slow a local cluster under load; check the log",
    )
    chaos.add_argument("rest", nargs=argparse.REMAINDER)
    chaos.set_defaults(func=_chaos)
    return parser


def _chaos(args: argparse.Namespace) -> int:
    from chaos.cli import main as chaos_main

    return chaos_main(args.rest)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["chaos"]:
        # chaos has its own parser (and options argparse's REMAINDER would not pass through).
        return _chaos(argparse.Namespace(rest=argv[1:]))
    if argv[:2] == ["bench", "invoke"]:
        from bench import invoke as invoke_bench

        args = invoke_bench.build_parser().parse_args(argv[2:])
        args.func = invoke_bench.run
    elif argv[:2] == ["bench", "append"]:
        from bench import append_latency

        args = append_latency.build_parser().parse_args(argv[2:])
        args.func = append_latency.run
    else:
        args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, UsageError) as e:
        print(f"durastate: {e}", file=sys.stderr)
        return 2
    except (
        CliError,
        ClusterError,
        NodeUnreachable,
        OutcomeUnknown,
        Refused,
        Unauthenticated,
        NodeError,
    ) as e:
        print(f"durastate: {e}", file=sys.stderr)
        return 1
    except InvalidRequest as e:  # the node refused the input itself: a usage error
        print(f"durastate: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `durastate cluster status --json | head`
        sys.stderr.close()
        return 0
    except Exception as e:  # a bug: still one line, never a traceback
        text = " ".join(str(e).split())
        print(f"durastate: unexpected error: {type(e).__name__}: {text}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
