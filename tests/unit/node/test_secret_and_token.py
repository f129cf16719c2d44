"""The cluster secret (files, where nodes and clients find it) and the gRPC token made from it."""

import os
from pathlib import Path

import pytest

from node import secret
from node.config import ConfigError, NodeConfig, SecurityConfig, load
from node.grpc_auth import TOKEN_VALIDITY_S, check_token, make_token

KEY = "ab" * 32


def test_a_generated_file_is_private_random_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "d" / "cluster.secret"
    first = secret.generate_file(path)
    assert len(first) == secret.SECRET_BYTES
    assert path.stat().st_mode & 0o777 == 0o600
    assert secret.generate_file(path) == first, "an existing secret is never replaced"
    assert secret.generate_file(tmp_path / "other") != first


def test_a_node_takes_the_configured_secret_else_makes_its_own(tmp_path: Path) -> None:
    assert secret.for_node(NodeConfig(security=SecurityConfig(secret=KEY))) == bytes.fromhex(KEY)
    file = tmp_path / "s"
    file.write_text(KEY + "\n")
    assert secret.for_node(NodeConfig(security=SecurityConfig(secret_file=file))) == bytes.fromhex(KEY)
    own = secret.for_node(NodeConfig(base_dir=tmp_path / "base"))
    assert (tmp_path / "base" / "cluster.secret").exists()
    assert secret.for_node(NodeConfig(base_dir=tmp_path / "base")) == own
    with pytest.raises(secret.SecretError, match="cannot read the cluster secret file"):
        secret.for_node(NodeConfig(security=SecurityConfig(secret_file=tmp_path / "missing")))


@pytest.mark.parametrize(("text", "needle"), [("zz" * 32, "not hex"), ("ab" * 8, "8 bytes")])
def test_a_bad_secret_is_named_but_never_printed(tmp_path: Path, text: str, needle: str) -> None:
    file = tmp_path / "s"
    file.write_text(text)
    with pytest.raises(secret.SecretError, match=needle) as e:
        secret.read_file(file)
    assert text not in str(e.value)
    with pytest.raises(ConfigError, match=needle) as e:
        load(None, {"DURASTATE_SECURITY_SECRET": text}, {})
    assert text not in str(e.value)


def test_client_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(secret.SecretError, match="no cluster secret"):
        secret.for_client(None, None, {})
    default = secret.generate_file(tmp_path / "durastate-data" / "cluster.secret")
    assert secret.for_client(None, None, {}) == default
    assert secret.for_client(None, None, {secret.ENV_SECRET: KEY}) == bytes.fromhex(KEY)
    cluster = secret.generate_file(tmp_path / "cluster" / "cluster.secret")
    assert secret.for_client(None, tmp_path / "cluster", {secret.ENV_SECRET: KEY}) == cluster
    explicit = tmp_path / "explicit"
    explicit.write_text("cd" * 32)
    assert secret.for_client(explicit, tmp_path / "cluster", {}) == bytes.fromhex("cd" * 32)
    secret.remember(["127.0.0.1:1"], b"r" * 32)
    assert secret.for_address("127.0.0.1:1", {}) == b"r" * 32
    assert secret.for_address("127.0.0.1:2", {}) == default


def test_config_takes_the_secret_from_every_layer_and_never_prints_it(tmp_path: Path) -> None:
    toml = tmp_path / "node.toml"
    toml.write_text(f'[security]\nsecret_file = "{tmp_path / "s"}"\n')
    cfg = load(toml, {}, {})
    assert cfg.security.secret_file == tmp_path / "s"
    cfg = load(None, {"DURASTATE_SECURITY_SECRET": KEY}, {})
    assert cfg.security.secret == KEY
    printed = cfg.to_toml()
    assert KEY not in printed and "# secret: set, not printed" in printed
    assert KEY not in repr(cfg)
    with pytest.raises(ConfigError, match="not both"):
        load(toml, {"DURASTATE_SECURITY_SECRET": KEY}, {})
    with pytest.raises(ConfigError, match="unknown key 'security.password'"):
        bad = tmp_path / "bad.toml"
        bad.write_text("[security]\npassword = 1\n")
        load(bad, {}, {})


@pytest.mark.parametrize("address", ["0.0.0.0", "10.1.2.3", "node1.example", "::"])
def test_a_reachable_address_needs_an_explicit_secret(address: str) -> None:
    with pytest.raises(ConfigError, match="give the cluster secret"):
        load(None, {"DURASTATE_ADDRESS": address}, {})
    cfg = load(None, {"DURASTATE_ADDRESS": address, "DURASTATE_SECURITY_SECRET": KEY}, {})
    assert cfg.address == address


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_needs_no_secret(address: str) -> None:
    assert load(None, {"DURASTATE_ADDRESS": address}, {}).address == address


def test_tokens_check_secret_and_time() -> None:
    key = os.urandom(32)
    now = 1_700_000_000.0
    token = make_token(key, now)
    assert check_token(key, token, now) is None
    assert check_token(key, token, now + TOKEN_VALIDITY_S) is None
    assert check_token(key, token, now - TOKEN_VALIDITY_S) is None
    assert check_token(key, token, now + TOKEN_VALIDITY_S + 1)[0] == "expired-token"
    assert check_token(os.urandom(32), token, now)[0] == "wrong-token"
    assert check_token(key, None, now)[0] == "missing-token"
    for bad in ("", "x", "12.", ".abc", "9" * 40 + ".00", token.replace(".", "")):
        assert check_token(key, bad, now) is not None, bad
    stamp, mac = token.split(".")
    assert check_token(key, f"{int(stamp) + 1}.{mac}", now)[0] == "wrong-token"
