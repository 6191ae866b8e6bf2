"""bench.twoproc's reading of /proc (bench/twoproc/share.py), without running the benchmark: which of
two processes sharing a port (``SO_REUSEPORT``) holds each connection, each one's share of the
requests, and the CPU of a process whose children come and go (PostgreSQL's backends)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from bench.twoproc import share

# Listens on 127.0.0.1:PORT with SO_REUSEPORT, prints the bound port, then answers each
# connection's first byte with its own name and keeps the connection open.
LISTENER = """
import socket, sys
name, port = sys.argv[1], int(sys.argv[2])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
srv.bind(("127.0.0.1", port))
srv.listen(64)
print(srv.getsockname()[1], flush=True)
held = []
while True:
    conn, _ = srv.accept()
    conn.recv(1)
    conn.sendall(name.encode())
    held.append(conn)
"""


@pytest.fixture
def two_listeners() -> Iterator[tuple[dict[str, int], int]]:
    procs: list[subprocess.Popen[str]] = []
    try:
        port = 0
        for name in ("A", "B"):
            proc = subprocess.Popen(
                [sys.executable, "-c", LISTENER, name, str(port)], stdout=subprocess.PIPE, text=True
            )
            procs.append(proc)
            assert proc.stdout is not None
            port = int(proc.stdout.readline())
        yield {"A": procs[0].pid, "B": procs[1].pid}, port
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()


def test_each_connection_is_attributed_to_the_process_that_accepted_it(
    two_listeners: tuple[dict[str, int], int],
) -> None:
    pids, port = two_listeners
    clients, truth = [], {}
    try:
        for _ in range(16):
            client = socket.create_connection(("127.0.0.1", port))
            clients.append(client)
            client.sendall(b"?")
            truth[client.getsockname()[1]] = client.recv(1).decode()
        owner = share.owners(pids, port)
        assert owner == truth
        # Each client port carried as many requests as its index: the split adds them up by process.
        counts = {p: i for i, p in enumerate(truth)}
        unseen = max(truth) + 1  # a port no process holds (the connection ended before a sample)
        spread = share.spread(counts | {unseen: 5}, owner)
        for name in set(truth.values()):
            mine = [p for p, n in truth.items() if n == name]
            assert spread[name] == {
                "connections": len(mine),
                "requests": sum(counts[p] for p in mine),
            }
        assert spread["?"] == {"connections": 1, "requests": 5}
    finally:
        for client in clients:
            client.close()


def test_cpu_of_a_process_tree_keeps_the_children_that_exited() -> None:
    me = os.getpid()
    before = share.tree_cpu_seconds(me)
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass",
        ],
        check=True,
    )
    assert share.tree_cpu_seconds(me) - before >= 0.25
