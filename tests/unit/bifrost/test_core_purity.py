"""The cores stay sans-I/O: no ambient world in bifrost/core (STYLE-ANCHORS 'What durastate takes' 2)."""

from __future__ import annotations

import ast
from pathlib import Path

import bifrost.core

CORE = Path(bifrost.core.__file__).parent
FORBIDDEN_MODULES = (
    "asyncio",
    "socket",
    "time",
    "threading",
    "rocksdict",
    "grpc",
    "datetime",
    "os",
    "secrets",
    "uuid",
)
# random.Random (an injected instance's type) is fine; the module-level functions are not.
ALLOWED_RANDOM_ATTRS = ("Random",)


def violations(tree: ast.AST) -> list[str]:
    bad: list[str] = []
    random_aliases: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                root = a.name.split(".")[0]
                if root in FORBIDDEN_MODULES:
                    bad.append(f"line {node.lineno}: import {a.name}")
                if a.name == "random":
                    random_aliases.append(a.asname or "random")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            root = node.module.split(".")[0]
            if root in FORBIDDEN_MODULES:
                bad.append(f"line {node.lineno}: from {node.module} import ...")
            if node.module == "random":
                for a in node.names:
                    if a.name not in ALLOWED_RANDOM_ATTRS:
                        bad.append(f"line {node.lineno}: from random import {a.name}")
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in random_aliases
            and node.attr not in ALLOWED_RANDOM_ATTRS
        ):
            bad.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return bad


def test_core_modules_are_pure() -> None:
    files = sorted(CORE.glob("*.py"))
    assert len(files) >= 8
    problems = {f.name: v for f in files if (v := violations(ast.parse(f.read_text(), str(f))))}
    assert problems == {}, f"bifrost/core must stay sans-I/O: {problems}"


def test_the_lint_catches_what_it_should() -> None:
    src = "import time\nimport random\nfrom asyncio import sleep\nx = random.random()\ny: random.Random\n"
    assert len(violations(ast.parse(src))) == 3
