"""`python -m chaos.proxy` as a chaos test would run it: a process on a free port, stopped by pid."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from toxiproxy import Toxiproxy
from toxiproxy.api import APIConsumer

from .helpers import DEADLINE_S, connected, round_trip

REPO = Path(__file__).resolve().parents[3]


def first_line(proc: subprocess.Popen[bytes], timeout_s: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    assert ready, f"no output within {timeout_s}s"
    return proc.stdout.readline().decode()


@pytest.fixture
def proxy_process() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "chaos.proxy", "--port", "0", "--seed", "1"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_cli_serves_the_api_until_sigterm(proxy_process, echo):
    line = first_line(proxy_process, timeout_s=15)
    match = re.fullmatch(r"chaos\.proxy listening on http://127\.0\.0\.1:(\d+)\n", line)
    assert match, line
    saved = (APIConsumer.host, APIConsumer.port)
    try:
        client = Toxiproxy()
        client.update_api_consumer("127.0.0.1", int(match[1]))
        assert client.running()
        proxy = client.create(upstream=echo, name="echo")
        proxy.add_toxic(type="latency", attributes={"latency": 100})
        with connected(proxy.listen) as sock:
            assert round_trip(sock, b"through a process") >= 0.09
    finally:
        APIConsumer.host, APIConsumer.port = saved

    start = time.monotonic()
    os.kill(proxy_process.pid, signal.SIGTERM)
    assert proxy_process.wait(timeout=DEADLINE_S) == 0
    assert time.monotonic() - start < DEADLINE_S
    assert proxy_process.stderr is not None
    assert proxy_process.stderr.read() == b""


def test_cli_exits_1_when_the_port_is_taken(proxy_process):
    port = re.findall(r":(\d+)\n", first_line(proxy_process, timeout_s=15))[0]
    second = subprocess.run(
        [sys.executable, "-m", "chaos.proxy", "--port", port],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode == 1
    assert second.stderr.startswith(f"chaos.proxy: cannot listen on 127.0.0.1:{port}")
