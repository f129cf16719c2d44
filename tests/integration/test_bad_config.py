"""Bad configuration: a one-line error naming the problem, exit status 2, nothing written."""

import socket
from pathlib import Path

import pytest

from node.ports import free_ports
from tests.support.procs import clean_env, run_cli


def port_flags() -> list[str]:
    ingress, admin, node, data = free_ports(4)
    return [
        "--ingress-port",
        str(ingress),
        "--admin-port",
        str(admin),
        "--node-port",
        str(node),
        "--data-port",
        str(data),
    ]


def assert_refused(result, needle: str, base_dir: Path) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]
    assert not base_dir.exists(), "a refused start must write nothing"


def test_unknown_key(tmp_path: Path) -> None:
    cfg = tmp_path / "node.toml"
    cfg.write_text('node_name = "n1"\nbase_dirr = "x"\n')
    base = tmp_path / "data"
    result = run_cli("server", "--config", str(cfg), "--base-dir", str(base), *port_flags())
    assert_refused(result, "unknown key 'base_dirr'", base)


def test_wrong_type(tmp_path: Path) -> None:
    cfg = tmp_path / "node.toml"
    cfg.write_text('[ports]\ningress = "8080"\n')
    base = tmp_path / "data"
    result = run_cli("server", "--config", str(cfg), "--base-dir", str(base))
    assert_refused(result, "ports.ingress", base)


def test_wrong_type_in_environment(tmp_path: Path) -> None:
    base = tmp_path / "data"
    result = run_cli("server", "--base-dir", str(base), env=clean_env(DURASTATE_PORTS_ADMIN="nine"))
    assert_refused(result, "DURASTATE_PORTS_ADMIN", base)


def test_port_in_use(tmp_path: Path) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    try:
        base = tmp_path / "data"
        flags = port_flags()
        flags[3] = str(s.getsockname()[1])  # the admin port
        result = run_cli("server", "--base-dir", str(base), *flags)
        assert_refused(result, f"ports.admin = {flags[3]} is already in use", base)
    finally:
        s.close()


@pytest.mark.parametrize("nested", [False, True])
def test_unusable_base_dir(tmp_path: Path, nested: bool) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    base = blocker / "data" if nested else blocker
    result = run_cli("server", "--base-dir", str(base), *port_flags())
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert str(blocker) in result.stderr
    assert blocker.read_text() == "not a directory"


def test_unknown_flag_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli("server", "--no-such-flag")
    assert result.returncode == 2
    assert "--no-such-flag" in result.stderr
