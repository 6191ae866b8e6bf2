-- Earlier-slot offers, the waitlist (issue 13 item 5).
--
-- waitlist_entries: an appointment booked by text whose patient replied W, waiting for an earlier slot at
-- its location and modality, in order of joining. No number here: the offer is texted to the number
-- sealed in the appointment record (kept until start + 1 day, erased at a cancel), and the entry ends
-- with the appointment.
CREATE TABLE waitlist_entries (
    id              bigserial PRIMARY KEY,
    appointment_id  text NOT NULL REFERENCES appointments (appointment_id) ON DELETE CASCADE,
    location_id     text NOT NULL,
    modality        text NOT NULL,
    phone_hash      text NOT NULL,
    joined_at       timestamptz NOT NULL,
    state           text NOT NULL DEFAULT 'waiting'
                    CHECK (state IN ('waiting', 'left', 'filled', 'ended')),
    ended_at        timestamptz
);
-- One waiting entry per appointment (W twice leaves; a repeated W webhook joins once).
CREATE UNIQUE INDEX waitlist_entries_one_waiting ON waitlist_entries (appointment_id)
    WHERE state = 'waiting';
CREATE INDEX waitlist_entries_queue ON waitlist_entries (location_id, modality, joined_at, id)
    WHERE state = 'waiting';
CREATE INDEX waitlist_entries_phone ON waitlist_entries (phone_hash) WHERE state = 'waiting';

-- waitlist_offers: a freed slot (the vacancy: the appointment whose cancel freed it) offered to one entry.
-- 'accepting': YES was received and the reschedule is at the RIS; still live, so nobody else is offered
-- the slot meanwhile. 'taken' and 'unavailable' (the RIS refused) close the vacancy for everyone.
CREATE TABLE waitlist_offers (
    id              bigserial PRIMARY KEY,
    vacancy         text NOT NULL,
    slot_id         text NOT NULL,
    location_id     text NOT NULL,
    modality        text NOT NULL,
    slot_start      timestamptz NOT NULL,
    entry_id        bigint NOT NULL REFERENCES waitlist_entries (id) ON DELETE CASCADE,
    phone_hash      text NOT NULL,
    state           text NOT NULL DEFAULT 'offered'
                    CHECK (state IN ('offered', 'accepting', 'taken', 'declined', 'expired',
                                     'unavailable')),
    offered_at      timestamptz NOT NULL,
    hold_until      timestamptz NOT NULL,
    settled_at      timestamptz
);
-- Never two patients for one slot: at most one live offer per slot ...
CREATE UNIQUE INDEX waitlist_offers_one_live_per_slot ON waitlist_offers (location_id, slot_id)
    WHERE state IN ('offered', 'accepting');
-- ... and one per phone, so a YES names one slot.
CREATE UNIQUE INDEX waitlist_offers_one_live_per_phone ON waitlist_offers (phone_hash)
    WHERE state IN ('offered', 'accepting');
-- A patient is offered a vacancy once (NO, or the hold ran out: the next patient).
CREATE UNIQUE INDEX waitlist_offers_once ON waitlist_offers (vacancy, entry_id);
CREATE INDEX waitlist_offers_holds ON waitlist_offers (hold_until) WHERE state = 'offered';
