"""A process is only gone, and its ports free, when every one of its threads has exited.

The flake this pins down: a node's main thread exits first (its /proc stat says Z) while other
threads still hold the listening sockets; treating it as dead and restarting the node failed
with "port already in use".
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

from node.local_cluster import _gone
from node.ports import free_ports, port_in_use
from tests.support.wait import wait_until

# The main thread leaves with the raw exit syscall (not exit_group), so the thread group lives on
# with a zombie leader and one thread that holds a listening socket.
_HALF_DEAD = textwrap.dedent(
    """
    import ctypes, platform, socket, sys, threading, time
    port = int(sys.argv[1])
    sys_exit = {"x86_64": 60, "aarch64": 93}[platform.machine()]
    s = socket.socket(); s.bind(("127.0.0.1", port)); s.listen()
    threading.Thread(target=lambda: time.sleep(600)).start()
    print("ready", flush=True)
    ctypes.CDLL(None).syscall(sys_exit, 0)  # SYS_exit: only this thread ends
    """
)


def test_a_zombie_leader_with_live_threads_is_not_gone() -> None:
    (port,) = free_ports(1)
    proc = subprocess.Popen([sys.executable, "-c", _HALF_DEAD, str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        wait_until(
            lambda: open(f"/proc/{proc.pid}/stat").read().split(") ")[1][0] == "Z", 10, "leader zombie"
        )
        assert port_in_use(port)
        assert not _gone(proc.pid)
        proc.send_signal(signal.SIGKILL)
        wait_until(lambda: _gone(proc.pid), 10, "every thread to exit")
        assert not port_in_use(port)
    finally:
        proc.kill()
        proc.wait(timeout=10)
