"""Which daemon process holds which connection, and where the CPU went, from Linux's /proc.

With ``SO_REUSEPORT`` the kernel hands each new connection to one of the listening processes by a
hash of its addresses; neither the client nor the daemons say which. :func:`owners` finds out on
the server side: each process's socket inodes (``/proc/PID/fd``) against the established
connections to the shared port (``/proc/net/tcp``), giving the client's port → process name.
:func:`spread` then splits a load generator's per-local-port counts by process.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

ESTABLISHED = "01"


def socket_inodes(pid: int) -> set[int]:
    """The inodes of the sockets process ``pid`` has open."""
    found = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for entry in fd_dir.iterdir():
        try:
            target = os.readlink(entry)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            found.add(int(target[8:-1]))
    return found


def established(port: int, tcp_table: str) -> dict[int, int]:
    """Inode → remote port of the established connections whose local port is ``port``, from the
    text of ``/proc/net/tcp`` (or ``tcp6``)."""
    out = {}
    for line in tcp_table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != ESTABLISHED:
            continue
        local, remote = fields[1], fields[2]
        if int(local.rsplit(":", 1)[1], 16) == port:
            out[int(fields[9])] = int(remote.rsplit(":", 1)[1], 16)
    return out


def owners(pids: Mapping[str, int], port: int) -> dict[int, str]:
    """Client port → the name (of ``pids``) of the process holding that connection to ``port``."""
    table = "".join(
        Path(f"/proc/net/{name}").read_text()
        for name in ("tcp", "tcp6")
        if Path(f"/proc/net/{name}").exists()
    )
    by_inode = established(port, table)
    out = {}
    for name, pid in pids.items():
        for inode in socket_inodes(pid) & by_inode.keys():
            out[by_inode[inode]] = name
    return out


def spread(counts: Mapping[int, int], owner: Mapping[int, str]) -> dict[str, dict[str, int]]:
    """Per process: its connections and the requests they carried, from the load generator's
    count per local port and :func:`owners`; ports no process was seen holding fall under ``?``."""
    out: dict[str, dict[str, int]] = {}
    for local_port, count in counts.items():
        row = out.setdefault(owner.get(local_port, "?"), {"connections": 0, "requests": 0})
        row["connections"] += 1
        row["requests"] += count
    return out


def cpu_ticks() -> dict[str, int]:
    """The machine's CPU ticks so far, all cores (``/proc/stat``): ``total``, ``busy`` (all but
    idle and iowait), ``irq`` (hard and soft interrupts, loopback TCP's among them, charged to no
    process) and ``steal`` (the hypervisor ran someone else)."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    total = sum(f)
    return {"total": total, "busy": total - f[3] - f[4], "irq": f[5] + f[6], "steal": f[7]}


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process and its children (user + system), living and reaped: PostgreSQL's
    postmaster and its backends."""
    tick = os.sysconf("SC_CLK_TCK")
    children: list[int] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry.name))
    total = 0
    for p, reaped in ((pid, True), *((c, False) for c in children)):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime stime cutime cstime: fields 14-17 of stat, 11-14 after the command.
        total += int(fields[11]) + int(fields[12])
        if reaped:
            total += int(fields[13]) + int(fields[14])
    return total / tick
