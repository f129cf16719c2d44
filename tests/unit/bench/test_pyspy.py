"""The py-spy summary charges each sample to the deepest frame of durastate's own code."""

from pathlib import Path

from bench.pyspy import EVENT_LOOP, OUTSIDE, component, summarize

LOOP = "_run_module_as_main (<frozen runpy>:198);main (node/cli.py:588);_run_loop (node/cli.py:117)"


def test_component_names_package_and_module_of_own_code_only() -> None:
    assert component("_flush (bifrost/net/messaging.py:307)") == "bifrost/net"
    assert component("_write (processor/store/partition_store.py:193)") == "processor/store"
    assert component("_run_loop (node/cli.py:117)") == "node/cli"
    assert component("run (uvloop/__init__.py:92)") is None
    assert component("send (/usr/lib/python3.11/site-packages/h2/connection.py:10)") is None
    assert component("<module> (<frozen runpy>:88)") is None


def test_samples_go_to_the_deepest_own_frame(tmp_path: Path) -> None:
    raw = tmp_path / "n1.txt"
    raw.write_text(
        "\n".join(
            [
                # A library call made by the log's network code counts for the log's network code.
                f"{LOOP};_flush (bifrost/net/messaging.py:307);write (uvloop/transport.py:1) 6",
                f"{LOOP};apply (processor/core/_state_machine.py:40) 3",
                # Only the loop's entry on the stack: the loop's own C code.
                f"{LOOP};run (asyncio/runners.py:118) 1",
                "_bootstrap (threading.py:1002);run (threading.py:900) 2",
                "",
            ]
        )
    )
    total, components, functions = summarize([raw, tmp_path / "missing.txt"])
    assert total == 12
    assert dict(components) == {"bifrost/net": 0.5, "processor/core": 0.25, EVENT_LOOP: 1 / 12, OUTSIDE: 2 / 12}
    assert [name for name, _ in components][0] == "bifrost/net"
    assert dict(functions) == {
        "_flush (bifrost/net/messaging.py)": 0.5,
        "apply (processor/core/_state_machine.py)": 0.25,
    }
