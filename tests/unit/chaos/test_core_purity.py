"""chaos/proxy/core must stay sans-I/O: no clock, socket, task, HTTP or module-level randomness."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[3] / "chaos" / "proxy" / "core"

FORBIDDEN = frozenset(
    {"asyncio", "socket", "time", "random", "threading", "subprocess", "selectors", "aiohttp", "requests"}
)


def imported_modules(source: str, package: str) -> list[str]:
    """Absolute names of every module ``source`` imports (relative imports resolved in ``package``)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - (node.level - 1)]
                names.append(".".join([*base, *([node.module] if node.module else [])]))
            else:
                names.append(node.module or "")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "__import__":
            names.append("__import__")
    return names


def violations(source: str, package: str) -> list[str]:
    found = []
    for module in imported_modules(source, package):
        top = module.split(".")[0]
        if top in FORBIDDEN or top in ("importlib", "__import__"):
            found.append(module)
        elif top == "chaos" and not module.startswith("chaos.proxy.core"):
            found.append(module)  # the shell may import the core, never the other way round
    return found


def core_files() -> list[Path]:
    files = sorted(CORE.rglob("*.py"))
    assert files, f"no core modules found under {CORE}"
    return files


@pytest.mark.parametrize("path", core_files(), ids=lambda p: p.name)
def test_core_module_imports_nothing_from_the_world(path):
    package = ".".join(["chaos", "proxy", "core", *path.relative_to(CORE).parent.parts])
    assert violations(path.read_text(), package) == [], f"{path} must stay sans-I/O"


def test_the_checker_catches_every_import_form():
    probe = "\n".join(
        [
            "import asyncio",
            "from random import random",
            "from .._relay import Relay",
            "from . import _stages",
            "from chaos.proxy.core import Toxic",
            "import aiohttp.web as w",
            "__import__('socket')",
        ]
    )
    assert violations(probe, "chaos.proxy.core") == [
        "asyncio",
        "random",
        "chaos.proxy._relay",
        "aiohttp.web",
        "__import__",
    ]
