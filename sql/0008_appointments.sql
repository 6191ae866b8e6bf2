-- The appointment lifecycle (issue 12): one record per appointment we booked (REST or SMS) or learned of from
-- the RIS, the reschedule/cancel requests made on it, and the events the SMS engine follows (issue 13).
--
-- Retention: the columns in clear carry no PHI (ids, location, modality, times, status). What identifies the
-- patient (MRN, name, date of birth, sex, order numbers; needed for the PID of a later SIU^S13/S15 to the
-- EMRs) is sealed with PHI_KEY in `phi` and erased at `phi_expires_at`: one day after the appointment's start,
-- or at once when it is cancelled or deleted. This replaces the 24-hour rule of orders.phi for booked
-- appointments only, because a reschedule or cancel days later must still name the patient to the EMR.

CREATE TABLE appointments (
    appointment_id        text PRIMARY KEY,          -- ours, placer (ARQ-1 / SCH-1)
    filler_appointment_id text,                      -- the RIS's (SCH-2), when it gave one
    order_key             text,                      -- HMAC of the order id (0002), NULL if learned by relay
    booking_id            uuid REFERENCES bookings (id),
    slot_id               text NOT NULL,             -- the RIS slot id as booked / last moved to
    location_id           text NOT NULL,
    modality              text NOT NULL,
    start_at              timestamptz NOT NULL,
    duration_minutes      integer NOT NULL CHECK (duration_minutes > 0),
    status                text NOT NULL DEFAULT 'booked'
                          CHECK (status IN ('booked', 'rescheduled', 'cancelled', 'deleted')),
    origin                text NOT NULL CHECK (origin IN ('rest', 'sms', 'ris')),
    changed_by            text NOT NULL DEFAULT 'booking'
                          CHECK (changed_by IN ('booking', 'rest', 'sms', 'ris', 'cli')),
    confirmation_code     text,
    emr_destinations      text[] NOT NULL DEFAULT '{}', -- outbox destinations the S12 was queued to
    dialect               text,                         -- the RIS dialect it was booked in
    phi                   bytea,                        -- AES-GCM(PHI_KEY): patient identifiers; NULL once erased
    phi_expires_at        timestamptz NOT NULL,
    version               integer NOT NULL DEFAULT 1,   -- bumped on every change (optimistic checks, ETags)
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX appointments_filler ON appointments (filler_appointment_id) WHERE filler_appointment_id IS NOT NULL;
CREATE INDEX appointments_order ON appointments (order_key) WHERE order_key IS NOT NULL;
CREATE INDEX appointments_phi_expiry ON appointments (phi_expires_at) WHERE phi IS NOT NULL;
CREATE INDEX appointments_start ON appointments (start_at);

-- A reschedule or cancel we ask of the RIS, written BEFORE the HL7 goes out (like bookings): a repeat returns
-- the stored outcome, a crash between send and answer re-sends with the same MSH-10. At most one change is
-- pending per appointment, so a cancel racing a reschedule (or a booking still pending) cannot leave two truths.
CREATE TABLE appointment_changes (
    id                uuid PRIMARY KEY,
    appointment_id    text NOT NULL REFERENCES appointments (appointment_id),
    kind              text NOT NULL CHECK (kind IN ('cancel', 'reschedule')),
    origin            text NOT NULL CHECK (origin IN ('rest', 'sms', 'cli')),
    state             text NOT NULL DEFAULT 'pending'
                      CHECK (state IN ('pending', 'done', 'refused', 'failed')),
    control_id        text NOT NULL UNIQUE,         -- MSH-10 of the SRM^S02/S04 or ORM; reused when re-sent
    slot_id           text,                         -- reschedule: the new slot
    location_id       text,
    start_at          timestamptz,
    duration_minutes  integer,
    ack_code          text,
    order_control     text,                         -- qie-2.3: ORC-1 of an ORR answer (CR, UC)
    reason            text,                         -- the RIS's refusal text (MSA-3/ERR/ORC-16; no PHI)
    request_reason    text,                         -- the caller's reason (ARQ-6/ORC-16, SCH-6 of the S15), kept
                                                    -- so a re-sent request is the same message; no PHI by contract
    confirmation_code text,                         -- reschedule: the new code
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    correlation_id    text NOT NULL
);
CREATE UNIQUE INDEX appointment_changes_one_pending ON appointment_changes (appointment_id)
    WHERE state = 'pending';
CREATE INDEX appointment_changes_pending ON appointment_changes (created_at) WHERE state = 'pending';
CREATE INDEX appointment_changes_appointment ON appointment_changes (appointment_id, created_at);

-- What happened to appointments, in order, for the SMS engine (reminders, "your appointment moved") and the
-- console. Written in the transaction that changes the record, with NOTIFY appointment_events; readers keep
-- their own cursor (the id). No PHI: kinds, ids, times.
CREATE TABLE appointment_events (
    id             bigserial PRIMARY KEY,
    appointment_id text NOT NULL REFERENCES appointments (appointment_id),
    kind           text NOT NULL CHECK (kind IN ('booked', 'rescheduled', 'modified', 'cancelled', 'deleted')),
    origin         text NOT NULL CHECK (origin IN ('rest', 'sms', 'ris', 'cli')),
    start_at       timestamptz,                     -- the start after the event
    previous_start timestamptz,                     -- reschedule: the start before
    at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX appointment_events_appointment ON appointment_events (appointment_id, id);

-- EMR notifications of a change (S13/S14/S15/S17) travel through the same FIFO outbox as the S12.
ALTER TABLE hl7_outbox DROP CONSTRAINT hl7_outbox_origin_check;
ALTER TABLE hl7_outbox ADD CONSTRAINT hl7_outbox_origin_check
    CHECK (origin IN ('booking', 'relay', 'change'));
-- A change looks up (and locks) the earlier messages of its appointment at each destination.
CREATE INDEX hl7_outbox_appointment ON hl7_outbox (appointment_id, destination) WHERE appointment_id IS NOT NULL;

-- Appointments booked before this migration: the record from the booking and the EMR destinations from the
-- outbox. Their patient identifiers stay in orders.phi (sealed for that row); the daemon reads them there while
-- they exist (phi here is NULL).
INSERT INTO appointments (appointment_id, filler_appointment_id, order_key, booking_id, slot_id, location_id,
                          modality, start_at, duration_minutes, origin, confirmation_code, emr_destinations,
                          phi, phi_expires_at, created_at, updated_at)
SELECT b.appointment_id, b.filler_appointment_id, b.order_key, b.id, b.slot_id, b.location_id, b.modality,
       b.start_at, b.duration_minutes, b.source, b.confirmation_code,
       COALESCE((SELECT array_agg(DISTINCT h.destination ORDER BY h.destination) FROM hl7_outbox h
                  WHERE h.appointment_id = b.appointment_id AND h.message_type = 'SIU^S12'), '{}'),
       NULL, b.start_at + interval '1 day', b.created_at, b.updated_at
  FROM bookings b
 WHERE b.state = 'booked' AND b.start_at IS NOT NULL AND b.duration_minutes > 0
ON CONFLICT (appointment_id) DO NOTHING;
