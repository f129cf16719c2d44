"""The committed protobuf modules must be what scripts/gen-proto produces from the .proto sources."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def test_generated_modules_match_sources(tmp_path: Path) -> None:
    subprocess.run([str(ROOT / "scripts" / "gen-proto"), str(tmp_path)], check=True)
    fresh = sorted(
        p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.name.endswith(GENERATED_SUFFIXES)
    )
    assert fresh, "gen-proto produced nothing"
    committed = sorted(
        p.relative_to(ROOT) for p in (ROOT / "proto").rglob("*") if p.name.endswith(GENERATED_SUFFIXES)
    )
    assert committed == fresh, "generated files differ from the committed set: run scripts/gen-proto"
    stale = [str(p) for p in fresh if (tmp_path / p).read_bytes() != (ROOT / p).read_bytes()]
    assert not stale, f"stale generated modules (run scripts/gen-proto): {stale}"


def test_no_top_level_proto_files() -> None:
    # A top-level kv.proto or similar would clash in protobuf's global pool with etcd clients.
    assert not list((ROOT / "proto").glob("*.proto"))
