"""A small cockroachdb/datadriven runner.

A test file is a sequence of directives::

    # comments and blank lines between directives are kept as they are
    command key=value key=(a, b) flag
    optional input lines
    ----
    expected output (ends at the first blank line)

An expected output that itself contains blank lines uses the doubled separator::

    command
    ----
    ----
    output with

    blank lines
    ----
    ----

`run_file(path, handler)` calls `handler(case)` for each directive and compares what it returns
with the expected output. With the environment variable DATADRIVEN_REWRITE=1 the file is
rewritten with the actual outputs instead (review the diff before committing it).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REWRITE_ENV = "DATADRIVEN_REWRITE"


@dataclass
class TestCase:
    __test__ = False  # not a pytest class, despite the name

    pos: str
    cmd: str
    args: dict[str, list[str]] = field(default_factory=dict)
    input: str = ""
    expected: str = ""

    def has(self, key: str) -> bool:
        return key in self.args

    def arg(self, key: str, default: str | None = None) -> str:
        vals = self.args.get(key)
        if not vals:
            if default is None:
                raise KeyError(f"{self.pos}: {self.cmd}: missing argument {key}")
            return default
        return vals[0]

    def int_arg(self, key: str, default: int | None = None) -> int:
        return int(self.arg(key, None if default is None else str(default)))

    def list_arg(self, key: str) -> list[str]:
        return self.args.get(key, [])


_ARG = re.compile(r"(\w[\w.-]*)(?:=(\([^)]*\)|\S+))?")


def parse_args(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for m in _ARG.finditer(text):
        key, val = m.group(1), m.group(2)
        if val is None:
            out[key] = []
        elif val.startswith("("):
            inner = val[1:-1].strip()
            out[key] = [v.strip() for v in inner.split(",")] if inner else []
        else:
            out[key] = [val]
    return out


@dataclass
class _Chunk:
    text: str  # verbatim text (comments / blank lines) when case is None
    case: TestCase | None = None
    header: str = ""


def _parse(path: Path) -> list[_Chunk]:
    lines = path.read_text().split("\n")
    chunks: list[_Chunk] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith("#"):
            chunks.append(_Chunk(line))
            i += 1
            continue
        header = line
        start = i + 1
        parts = header.split(None, 1)
        case = TestCase(f"{path.name}:{i + 1}", parts[0], parse_args(parts[1] if len(parts) > 1 else ""))
        i += 1
        inp: list[str] = []
        while i < len(lines) and lines[i] != "----":
            inp.append(lines[i])
            i += 1
        if i >= len(lines):
            raise ValueError(f"{path.name}:{start}: directive {header!r} has no ---- separator")
        i += 1
        out: list[str] = []
        if i < len(lines) and lines[i] == "----":
            i += 1
            while i + 1 < len(lines) and not (lines[i] == "----" and lines[i + 1] == "----"):
                out.append(lines[i])
                i += 1
            i += 2
        else:
            while i < len(lines) and lines[i].strip():
                out.append(lines[i])
                i += 1
        case.input = "\n".join(inp)
        case.expected = "\n".join(out)
        chunks.append(_Chunk("", case, header + ("\n" + case.input if inp else "")))
    return chunks


def _render(header: str, output: str) -> str:
    output = output.rstrip("\n")
    if any(not ln.strip() for ln in output.split("\n")) and output:
        return f"{header}\n----\n----\n{output}\n----\n----"
    return f"{header}\n----\n{output}" if output else f"{header}\n----"


def run_file(path: str | Path, handler: Callable[[TestCase], str]) -> None:
    path = Path(path)
    chunks = _parse(path)
    rewrite = os.environ.get(REWRITE_ENV) == "1"
    rendered: list[str] = []
    for ch in chunks:
        if ch.case is None:
            rendered.append(ch.text)
            continue
        actual = handler(ch.case).rstrip("\n")
        if rewrite:
            rendered.append(_render(ch.header, actual))
        elif actual.strip() != ch.case.expected.strip():
            raise AssertionError(
                f"{ch.case.pos}: {ch.header.splitlines()[0]}\n--- expected\n{ch.case.expected}\n--- actual\n{actual}\n"
                f"(run with {REWRITE_ENV}=1 to rewrite, then review the diff)"
            )
    if rewrite:
        text = "\n".join(rendered)
        path.write_text(text if text.endswith("\n") else text + "\n")


def walk(directory: str | Path, pattern: str = "*.txt") -> list[Path]:
    return sorted(Path(directory).glob(pattern))
