-- EMR outbox (radsched/emr): what the sender and the operator need beyond 0001's hl7_outbox.
-- None of these columns carries PHI: facility codes, appointment ids (ours or the RIS's), counters.

ALTER TABLE hl7_outbox
    ADD COLUMN facility          text,                      -- routing facility the row was routed by
    ADD COLUMN origin            text NOT NULL DEFAULT 'booking'
                                 CHECK (origin IN ('booking', 'relay')),
    ADD COLUMN appointment_id    text,                      -- SCH-1 (placer appointment id), for logs and look-ups
    ADD COLUMN source_control_id text,                      -- relay: the RIS's MSH-10 of the message we forwarded
    ADD COLUMN rejections        integer NOT NULL DEFAULT 0, -- AE/CE answers so far (bounded; AR/network failures are not)
    ADD COLUMN dead_at           timestamptz;               -- when it was dead-lettered (reason in last_error)

-- Dead letters are few; the operator lists them and the metrics count them per destination.
CREATE INDEX hl7_outbox_dead ON hl7_outbox (destination, id) WHERE state = 'dead';

-- Singleton maintenance jobs (retention): when each last ran, so several daemons run a daily job once a day.
CREATE TABLE maintenance_runs (
    job          text PRIMARY KEY,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz,
    result       jsonb NOT NULL DEFAULT '{}'::jsonb   -- counts of what was removed, no PHI
);
