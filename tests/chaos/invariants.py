"""The end-of-run checks: what must hold after a day of traffic and faults, once everything settled.

Each check is a row (name, figures, holds?) so the test asserts them and the soak prints them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from tests.chaos.patients import Patients
from tests.chaos.peers import OrderFeed
from tests.chaos.world import World


@dataclass(frozen=True)
class Check:
    name: str
    figures: str
    holds: bool


async def drained(world: World, feed: OrderFeed, patients: Patients) -> str | None:
    """None when nothing is in flight anywhere; else what is still moving (for the settle loop)."""
    if not feed.idle:
        return f"{feed.in_flight} orders not yet ACKed"
    if not patients.idle:
        return f"{patients.pending} patient replies in flight"
    [row] = await world.query(
        """SELECT
             (SELECT count(*) FROM sms_outbox WHERE state IN ('pending', 'sending')) AS sms,
             (SELECT count(*) FROM hl7_outbox WHERE state = 'pending') AS hl7,
             (SELECT count(*) FROM bookings WHERE state = 'pending') AS bookings"""
    )
    moving = {k: v for k, v in dict(row).items() if v}
    return ", ".join(f"{v} {k}" for k, v in moving.items()) or None


async def check(world: World, feed: OrderFeed, patients: Patients, sent: int) -> list[Check]:
    checks: list[Check] = []
    acked = Counter(o.ack for o in feed.done)
    [orders] = await world.query(
        """SELECT count(*) AS stored,
                  count(*) FILTER (WHERE EXISTS (SELECT 1 FROM sms_conversations c
                                                 WHERE c.order_key = o.order_key)) AS conversations,
                  count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM sms_conversations c
                                                     WHERE c.order_key = o.order_key)
                                   AND o.state = 'deferred' AND o.deferred_reason IS NOT NULL)
                    AS deferred
           FROM orders o"""
    )
    reasons = await world.query(
        """SELECT coalesce(deferred_reason, state) AS why, count(*) AS n FROM orders o
           WHERE NOT EXISTS (SELECT 1 FROM sms_conversations c WHERE c.order_key = o.order_key)
           GROUP BY 1 ORDER BY 1"""
    )
    why = ", ".join(f"{r['why']} {r['n']}" for r in reasons) or "none"
    checks.append(
        Check(
            "orders received = ACKed AA = stored = conversations started + deferred",
            f"sent {sent}, AA {acked['AA']}, AE {acked['AE']}, stored {orders['stored']}, "
            f"conversations {orders['conversations']} + deferred {orders['deferred']} ({why})",
            sent == acked["AA"] == orders["stored"] == orders["conversations"] + orders["deferred"],
        )
    )

    ris = world.sim.bookings
    placer_ids = {b.placer_appointment_id for b in ris.values()}
    [booked] = await world.query("SELECT count(*) AS n FROM bookings WHERE state = 'booked'")
    per_emr = []
    exactly_once = True
    for emr in world.emrs:
        appointments = Counter(emr.peer.applied.values())
        twice = sum(1 for n in appointments.values() if n > 1)
        same = set(appointments) == placer_ids
        exactly_once &= same and twice == 0
        per_emr.append(
            f"{emr.peer.name}: {len(emr.peer.applied)} MSH-10 accepted"
            f"{'' if same else ' (set differs from RIS bookings)'}"
            f", {twice} appointments under two MSH-10, {emr.peer.wire_duplicates()} wire duplicates"
        )
    checks.append(
        Check(
            "bookings confirmed by the RIS = SIU delivered once to each EMR (by MSH-10)",
            f"RIS {len(ris)}, daemon booked {booked['n']}; " + "; ".join(per_emr),
            exactly_once and len(ris) == booked["n"],
        )
    )

    duplicates = patients.duplicate_texts()
    checks.append(
        Check(
            "no patient got two copies of one text (To + body + step)",
            f"{len(patients.texts)} texts to {len(patients.by_phone)} patients, "
            f"{duplicates} duplicates",
            duplicates == 0,
        )
    )

    per_order = Counter(b.order_id for b in ris.values())
    twice = sum(1 for n in per_order.values() if n > 1)
    checks.append(
        Check(
            "no order booked twice on the RIS",
            f"{len(ris)} RIS bookings for {len(per_order)} orders, {twice} orders booked twice",
            twice == 0,
        )
    )

    left = await world.query(
        """SELECT 'sms ' || state AS what, count(*) AS n FROM sms_outbox
             WHERE state IN ('pending', 'sending') GROUP BY state
           UNION ALL
           SELECT 'hl7 ' || state, count(*) FROM hl7_outbox
             WHERE state IN ('pending', 'dead') GROUP BY state
           UNION ALL
           SELECT 'booking pending', count(*) FROM bookings WHERE state = 'pending'"""
    )
    leftover = {r["what"]: r["n"] for r in left if r["n"]}
    checks.append(
        Check(
            "outboxes drained (no pending/sending SMS, no pending or dead SIU, no pending booking)",
            ", ".join(f"{k} {v}" for k, v in leftover.items()) or "all drained",
            not leftover,
        )
    )
    return checks


async def figures(world: World, feed: OrderFeed, patients: Patients) -> dict[str, str]:
    """Context for the report (not pass/fail)."""
    sms = await world.query(
        "SELECT state, error_class, count(*) AS n FROM sms_outbox GROUP BY 1, 2"
    )
    hl7 = await world.query(
        "SELECT destination, sum(attempts) AS attempts, count(*) AS n FROM hl7_outbox GROUP BY 1"
    )
    bookings = await world.query("SELECT state, count(*) AS n FROM bookings GROUP BY 1")
    conversations = await world.query(
        "SELECT state, ended_at IS NOT NULL AS ended, count(*) AS n FROM sms_conversations "
        "GROUP BY 1, 2 ORDER BY 1, 2"
    )
    placer = [b.placer_appointment_id for b in world.sim.bookings.values()]
    lost = await world.query(
        """SELECT b.state, b.ack_code, b.reason, b.appointment_id,
                  (SELECT count(*) FROM hl7_outbox h WHERE h.appointment_id = b.appointment_id) AS siu
           FROM bookings b
           WHERE (b.appointment_id = ANY($1::text[]) AND b.state <> 'booked')
              OR (b.state = 'booked' AND NOT EXISTS
                    (SELECT 1 FROM hl7_outbox h WHERE h.appointment_id = b.appointment_id))""",
        placer,
    )
    unknown = set(placer) - set(
        r["appointment_id"] for r in await world.query("SELECT appointment_id FROM bookings")
    )
    [busy] = await world.query(
        """SELECT count(*) AS n FROM sms_conversations
            WHERE ended_at IS NULL AND state IN ('loading_locations', 'loading_slots', 'booking')"""
    )
    [unconfirmed] = await world.query(
        """SELECT count(*) AS n FROM bookings b JOIN sms_conversations c USING (order_key)
            WHERE b.state = 'booked' AND c.state <> 'booked'"""
    )
    return {
        "booked at the RIS after the conversation had ended (patient told to call; staff have it)": str(
            unconfirmed["n"]
        ),
        "conversations still waiting on the RIS (a restart re-issues the call)": str(busy["n"]),
        "RIS bookings not booked here, or booked without SIU": "; ".join(
            f"{r['appointment_id']} {r['state']} {r['ack_code']} {r['reason']} siu={r['siu']}"
            for r in lost
        )
        + (f"; unknown to the daemon: {sorted(unknown)}" if unknown else ""),
        "conversations by state": ", ".join(
            f"{r['state']}{'' if r['ended'] else ' (open)'} {r['n']}" for r in conversations
        ),
        "SMS outbox rows by state": ", ".join(
            f"{r['state']}{'/' + r['error_class'] if r['error_class'] else ''} {r['n']}"
            for r in sorted(sms, key=lambda r: (r["state"], r["error_class"] or ""))
        ),
        "SIU rows (attempts) per EMR": ", ".join(
            f"{r['destination']} {r['n']} ({r['attempts']})" for r in hl7
        ),
        "booking rows by state": ", ".join(f"{r['state']} {r['n']}" for r in bookings),
        "order feed exchanges": ", ".join(f"{k} {v}" for k, v in sorted(feed.outcomes.items())),
        "patient outcomes": ", ".join(f"{k} {v}" for k, v in sorted(patients.outcomes.items())),
        "webhook re-deliveries (same MessageSid)": str(patients.webhook_retries),
        "RIS frames": ", ".join(f"{k} {v}" for k, v in sorted(world.sim.counts.items())),
        "RIS duplicate control ids answered from its log": str(world.sim.duplicates),
    }
