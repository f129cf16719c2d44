"""The README's durable-execution example, as written: its Python service is served by hypercorn,
registered and invoked with the requests of its curl lines (on free ports instead of the
defaults), and answers what the README says."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

from tests.support.durable import Response, request, running_node
from tests.support.sdk_server import AsgiServers
from tests.support.wait import wait_until

README = Path(__file__).resolve().parents[2] / "README.md"


def example_service() -> str:
    text = README.read_text()
    found = re.search(r"```python\n(.*?)```", text, re.S)
    assert found, "the README has no Python example"
    return found.group(1)


def example_requests() -> list[tuple[list[str], str]]:
    """Each curl line of the example: (its arguments, the comment after it)."""
    section = README.read_text().split("## Durable execution", 1)[1].split("\n## ", 1)[0]
    out = []
    for line in section.splitlines():
        line = line.strip()
        if line.startswith("curl "):
            command, _, comment = line.partition("  #")
            out.append((shlex.split(command)[1:], comment.strip()))
    return out


def send(args: list[str], ports: dict[int, int]) -> Response:
    url, headers, body = "", {}, None
    i = 0
    while i < len(args):
        if args[i] == "-H":
            name, _, value = args[i + 1].partition(":")
            headers[name.strip()] = value.strip()
            i += 2
        elif args[i] == "-d":
            body = args[i + 1].encode()
            i += 2
        else:
            url = args[i]
            i += 1
    found = re.fullmatch(r"localhost:(\d+)(/.*)", url)
    assert found, url
    return request(ports[int(found.group(1))], "POST", found.group(2), body, headers)


def test_the_readme_example_works_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "greeter.py").write_text(example_service())
    # hypercorn finds greeter.py on its path, as it would in the user's directory.
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    )
    servers = AsgiServers(tmp_path)
    try:
        sdk = servers.start("greeter:app")
        with running_node(tmp_path / "node") as node:
            ports = {8080: node.http.ingress, 9070: node.http.admin}
            requests = example_requests()
            assert len(requests) == 6, requests
            for args, comment in requests:
                args = [a.replace("http://127.0.0.1:9080", sdk.url) for a in args]
                r = send(args, ports)
                assert r.status in (200, 201, 202), (args, r)
                if comment.startswith('"') or comment.isdigit():
                    assert r.body.decode() == comment, (args, r)
                if comment.startswith("202"):
                    assert r.status == 202 and r.json()["status"] == "Accepted", r
            # 5, then the send (1), the delayed send (1) and the idempotent call (1).
            wait_until(
                lambda: (
                    send(
                        [
                            "localhost:8080/Counter/alice/add",
                            "-d",
                            "0",
                            "-H",
                            "content-type: application/json",
                        ],
                        ports,
                    ).body
                    == b"8"
                ),
                30,
                "the sent and the delayed adds to run",
            )
    finally:
        servers.stop_all()
