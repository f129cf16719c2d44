from dataclasses import replace
from pathlib import Path

import pytest

from node.config import ConfigError, NodeConfig, build, load, preflight, read_file
from node.ports import Ports, free_node_ports


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "node.toml"
    p.write_text(text)
    return p


def test_defaults_are_a_single_node() -> None:
    cfg = load(None, {}, {})
    assert cfg == NodeConfig()
    assert cfg.metadata.backend == "local"
    assert cfg.ports == Ports(8080, 9070, 5122, 2379, 2380, 5123)


def test_precedence_file_then_env_then_flags(tmp_path: Path) -> None:
    f = write(tmp_path, 'node_name = "from-file"\nbase_dir = "/f"\n[ports]\ningress = 1001\nadmin = 1002\n')
    env = {"DURASTATE_NODE_NAME": "from-env", "DURASTATE_PORTS_ADMIN": "2002"}
    cfg = load(f, env, {("node_name",): "from-flag"})
    assert cfg.node_name == "from-flag"
    assert cfg.ports.admin == 2002
    assert cfg.ports.ingress == 1001
    assert cfg.base_dir == Path("/f")


def test_config_file_from_environment(tmp_path: Path) -> None:
    f = write(tmp_path, 'node_name = "x"\n')
    assert load(None, {"DURASTATE_CONFIG": str(f)}, {}).node_name == "x"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("nodename = 'x'\n", "unknown key 'nodename'"),
        ("[ports]\ningres = 1\n", "unknown key 'ports.ingres'"),
        ("[ports]\ningress = 'eighty'\n", "ports.ingress"),
        ("[ports]\ningress = 70000\n", "1..65535"),
        ("roles = ['worker', 'chef']\n", "unknown roles ['chef']"),
        ("[metadata]\nbackend = 'zookeeper'\n", "metadata.backend"),
        ("node_name = 'bad name'\n", "node_name"),
        ("node_name = \n", "not valid TOML"),
        ("[ports]\nadmin = 8080\n", "both 8080"),
    ],
)
def test_bad_file_names_the_problem(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=None) as err:
        load(write(tmp_path, text), {}, {})
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_environment_variable() -> None:
    with pytest.raises(ConfigError, match="DURASTATE_INGRESS_PROT"):
        load(None, {"DURASTATE_INGRESS_PROT": "1"}, {})


def test_environment_values_are_typed() -> None:
    cfg = load(None, {"DURASTATE_PORTS_NODE": "6000", "DURASTATE_ROLES": "worker, admin"}, {})
    assert cfg.ports.node == 6000
    assert cfg.roles == ("worker", "admin")
    with pytest.raises(ConfigError, match="DURASTATE_PORTS_NODE"):
        load(None, {"DURASTATE_PORTS_NODE": "x"}, {})


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load(tmp_path / "nope.toml", {}, {})


def test_printed_config_reads_back_identically(tmp_path: Path) -> None:
    cfg = load(
        write(
            tmp_path,
            'node_name = "n2"\n[metadata]\nbackend = "etcd"\netcd_endpoints = ["127.0.0.1:1"]\n'
            '[metadata.etcd_initial_cluster]\nn2 = "http://127.0.0.1:2"\n',
        ),
        {},
        {},
    )
    again = tmp_path / "again.toml"
    again.write_text(cfg.to_toml())
    assert build([("again", read_file(again))]) == cfg


def test_etcd_member_must_be_in_initial_cluster(tmp_path: Path) -> None:
    text = '[metadata]\nbackend = "etcd"\n[metadata.etcd_initial_cluster]\nother = "http://127.0.0.1:2"\n'
    with pytest.raises(ConfigError, match="must name this node"):
        load(write(tmp_path, text), {}, {})


def test_preflight_rejects_a_file_as_base_dir(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(ConfigError, match="not a directory"):
        preflight(NodeConfig(base_dir=f, ports=free_node_ports()))
    with pytest.raises(ConfigError, match="cannot be created"):
        preflight(NodeConfig(base_dir=f / "sub", ports=free_node_ports()))


def test_preflight_rejects_a_port_in_use(tmp_path: Path) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    try:
        ports = free_node_ports()
        busy = replace(ports, admin=s.getsockname()[1])
        with pytest.raises(ConfigError, match=f"ports.admin = {busy.admin} is already in use"):
            preflight(NodeConfig(base_dir=tmp_path / "d", ports=busy))
    finally:
        s.close()
    assert not (tmp_path / "d").exists()
