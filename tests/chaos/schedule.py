"""The fault schedule: what goes wrong when, drawn from a seeded RNG so a failing run can be replayed.

The plan is fixed before the run starts (times relative to its start), so the same seed gives the
same faults at the same moments; the traffic around them is timing-dependent, which is the point.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass

from mllp.testing import Direction
from tests.chaos.world import EMR_ACK_TIMEOUT_S, RIS_TIMEOUT_S, World

# Everything a peer or the platform does to the daemon, besides SIGKILL and the database restart.
PEER_FAULTS = (
    "ris_drop_mid_frame",  # the RIS booked/answered, the reply is cut in half and the socket closed
    "ris_drop_request",  # the request itself is cut on its way to the RIS
    "ris_stall",  # the reply is held past RIS_TIMEOUT_S, then released late
    "ris_nak_AE",
    "ris_nak_AR",
    "ris_junk",  # bytes that are not MLLP in front of the next reply
    "ris_garbage",  # a well-framed reply that is not HL7
    "emr_drop_mid_frame",
    "emr_drop_request",  # the SIU itself is cut on its way to the EMR
    "emr_stall",
    "emr_nak_AE",
    "emr_nak_AR",
    "emr_junk",
)


@dataclass(frozen=True)
class Fault:
    at: float
    kind: str
    target: int = 0
    """Which EMR (index) for emr_* faults."""
    length: float = 0.0
    """Seconds the fault lasts (windows), or the downtime (kill, database restart)."""


def plan(
    rng: random.Random, *, duration: float, kills: int, pg_restarts: int, peer_fault_every: float
) -> list[Fault]:
    faults: list[Fault] = []
    # Kills: one per equal slice of the run, at a random moment inside it (never two at once).
    slice_ = duration / max(kills, 1)
    for i in range(kills):
        at = slice_ * (i + rng.uniform(0.05, 0.95))
        faults.append(Fault(at, "kill", length=rng.choice((0.0, 0.0, 0.5, 1.5))))
    pg_slice = duration / max(pg_restarts, 1)
    for i in range(pg_restarts):
        at = pg_slice * (i + rng.uniform(0.2, 0.8))
        faults.append(Fault(at, "pg_restart", length=rng.uniform(0.5, 3.0)))
    at = rng.uniform(0.5, peer_fault_every)
    while at < duration:
        kind = rng.choice(PEER_FAULTS)
        faults.append(Fault(at, kind, target=rng.randrange(2), length=rng.uniform(0.5, 3.0)))
        at += rng.expovariate(1 / peer_fault_every)
    return sorted(faults, key=lambda f: f.at)


@dataclass
class Injector:
    world: World
    injected: Counter[str]

    async def apply(self, fault: Fault) -> None:
        w = self.world
        self.injected[fault.kind] += 1
        kind = fault.kind
        if kind == "kill":
            await w.kill_daemon(downtime=fault.length)
        elif kind == "pg_restart":
            await w.restart_postgres(fault.length)
        elif kind.startswith("ris_"):
            await self._ris(kind, fault.length)
        else:
            await self._emr(kind, fault.target, fault.length)

    async def _ris(self, kind: str, length: float) -> None:
        w = self.world
        if kind == "ris_drop_mid_frame":
            w.ris_proxy.drop_mid_frame()
        elif kind == "ris_drop_request":
            w.ris_proxy.drop_mid_frame(Direction.TO_SERVER)
        elif kind == "ris_stall":
            w.ris_proxy.stall()
            await asyncio.sleep(RIS_TIMEOUT_S + length)
            w.ris_proxy.resume()
        elif kind == "ris_junk":
            w.ris_proxy.inject_junk(b"\x00JUNK NOT MLLP\r\n")
        else:
            switch = {"ris_nak_AE": {"nak": "AE"}, "ris_nak_AR": {"nak": "AR"}}.get(
                kind, {"garbage": True}
            )
            w.sim.set_faults(**switch)
            await asyncio.sleep(length)
            w.sim.set_faults(nak="", garbage=False)

    async def _emr(self, kind: str, target: int, length: float) -> None:
        emr = self.world.emrs[target]
        if kind == "emr_drop_mid_frame":
            emr.proxy.drop_mid_frame()
        elif kind == "emr_drop_request":
            emr.proxy.drop_mid_frame(Direction.TO_SERVER)
        elif kind == "emr_stall":
            emr.proxy.stall()
            await asyncio.sleep(EMR_ACK_TIMEOUT_S + length)
            emr.proxy.resume()
        elif kind == "emr_junk":
            emr.proxy.inject_junk(b"JUNK\x1c\r")
        else:
            emr.peer.nak = kind.rsplit("_", 1)[1]
            await asyncio.sleep(length)
            emr.peer.nak = ""
