-- Appointment reminders (issue 13 item 1): one row per reminder text planned for an appointment booked by
-- text, written in the transaction that confirms the booking; sent by a sweep that claims due rows with
-- FOR UPDATE SKIP LOCKED and queues the text into sms_outbox in the transaction that marks the row sent, so a
-- reminder goes once across crashes and several daemons. A cancel or reschedule of the appointment cancels its
-- pending rows in the change's transaction.
--
-- Retention: the columns in clear carry no PHI (ids, kind, times, state; the phone only as its keyed hash, as in
-- sms_conversations). What the text needs (the number, the location's name, the modality and procedure code for
-- the prep line, the language) is sealed with PHI_KEY in `phi`, erased as soon as the row is no longer pending,
-- and the whole row is deleted at `expires_at` (the start + 1 day) by the retention job.

CREATE TABLE appointment_reminders (
    id             bigserial PRIMARY KEY,
    appointment_id text NOT NULL REFERENCES appointments (appointment_id) ON DELETE CASCADE,
    kind           text NOT NULL CHECK (kind ~ '^[1-9][0-9]*[mhd]$'),  -- the REMINDERS offset: 7d, 3d, 1d, 2m
    start_at       timestamptz NOT NULL,          -- the appointment's start this reminder was planned for
    due_at         timestamptz NOT NULL,          -- when to send (inside REMINDER_WINDOW unless off)
    state          text NOT NULL DEFAULT 'pending'
                   CHECK (state IN ('pending', 'sent', 'cancelled', 'skipped')),
    outcome        text,                          -- why cancelled/skipped (cancelled, rescheduled, opted_out, late)
    phone_hash     text NOT NULL,                 -- HMAC of the number (consent is looked up by it)
    phi            bytea,                         -- AES-GCM(PHI_KEY), aad 'reminder:<id>'; NULL once not pending
    expires_at     timestamptz NOT NULL,          -- start + 1 day: the row is deleted then
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    UNIQUE (appointment_id, start_at, kind)
);
CREATE INDEX appointment_reminders_due ON appointment_reminders (due_at) WHERE state = 'pending';
CREATE INDEX appointment_reminders_expiry ON appointment_reminders (expires_at);
-- A queue table: vacuumed by dead-row count, like the outboxes (0007), so the claim walks few dead rows.
ALTER TABLE appointment_reminders SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_analyze_scale_factor = 0,
    autovacuum_analyze_threshold = 5000
);

-- A phone that opts out has its queued reminder texts dropped from the outbox (sms_outbox.drop_pending_to_phone).
CREATE INDEX sms_outbox_pending_phone ON sms_outbox (phone_hash) WHERE state = 'pending';
