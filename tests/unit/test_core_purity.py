"""Every sans-I/O core (a ``core`` package anywhere in the project) stays free of the world:
no clocks, sockets, tasks, threads, disks, RPC or HTTP clients, and randomness only through an
injected ``random.Random`` (STYLE-ANCHORS, "What durastate takes", rule 2). Inside the project
a core may import only cores, the pure ``errors`` modules and the pure protocol libraries in
``PURE`` (checked sans-I/O by tests/unit/processor/test_protocol_purity.py): the shell imports the
core, never the other way round."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORES = sorted(
    p for p in ROOT.glob("*/**/core") if p.is_dir() and "tests" not in p.parts and p.parts[-2] != ".git"
)
PROJECT = {"bifrost", "metadata", "node", "chaos", "processor", "snapshots", "proto", "bench"}
FORBIDDEN = frozenset(
    {
        "asyncio",
        "socket",
        "time",
        "threading",
        "subprocess",
        "selectors",
        "datetime",
        "os",
        "secrets",
        "uuid",
        "importlib",
        "rocksdict",
        "grpc",
        "aetcd",
        "aiohttp",
        "requests",
        "boto3",
    }
)
# Pure libraries (no I/O, clocks or randomness of their own) that cores may build on.
PURE = ("processor.protocol", "processor.ids", "proto.durastate.service_protocol")
# random.Random (an injected instance's type) is fine; the module-level functions are not.
RANDOM_ALLOWED = {"Random"}


def violations(source: str, package: str) -> list[str]:
    found: list[str] = []
    random_aliases: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
            random_aliases |= {a.asname or "random" for a in node.names if a.name == "random"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                modules = [
                    ".".join(
                        [*parts[: len(parts) - (node.level - 1)], *([node.module] if node.module else [])]
                    )
                ]
            else:
                modules = [node.module or ""]
                if node.module == "random":
                    found += [f"random.{a.name}" for a in node.names if a.name not in RANDOM_ALLOWED]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "__import__":
            found.append("__import__")
        for module in modules:
            top = module.split(".")[0]
            if top in FORBIDDEN:
                found.append(module)
            elif (
                top in PROJECT
                and ".core" not in module
                and not module.endswith(".errors")
                and not module.startswith(PURE)
            ):
                found.append(module)
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in random_aliases
            and node.attr not in RANDOM_ALLOWED
        ):
            found.append(f"random.{node.attr}")
    return found


def core_modules() -> list[tuple[Path, str]]:
    out = []
    for core in CORES:
        for path in sorted(core.rglob("*.py")):
            out.append((path, ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])))
    return out


def test_the_cores_are_found() -> None:
    names = {str(c.relative_to(ROOT)) for c in CORES}
    assert {"bifrost/core", "metadata/core", "node/core", "chaos/proxy/core"} <= names, names


@pytest.mark.parametrize(
    ("path", "package"), core_modules(), ids=lambda x: str(x) if isinstance(x, str) else x.name
)
def test_core_module_is_sans_io(path: Path, package: str) -> None:
    assert violations(path.read_text(), package) == [], f"{path} must stay sans-I/O"


def test_the_checker_catches_every_form() -> None:
    probe = "\n".join(
        [
            "import asyncio",
            "import random",
            "from time import monotonic",
            "from metadata import local",
            "from ..etcd import EtcdMetadataStore",
            "from . import cas",
            "from metadata.errors import InvalidKey",
            "from bifrost.core._types import NodeId",
            "import grpc.aio as g",
            "from random import shuffle, Random",
            "__import__('socket')",
            "x = random.random()",
            "r = random.Random(1)",
        ]
    )
    assert violations(probe, "metadata.core") == [
        "asyncio",
        "time",
        "metadata",
        "metadata.etcd",
        "grpc.aio",
        "random.shuffle",
        "__import__",
        "random.random",
    ]
