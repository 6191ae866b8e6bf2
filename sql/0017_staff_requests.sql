-- Replies to an appointment booked by text (issue 13 items 2 and 3).
--
-- appointments.phone_hash: the keyed hash of the number the patient booked from (the same hash as
-- everywhere else, never the number), so a reply "1" or "3" finds the phone's upcoming appointments.
-- appointments.confirmed_at: when the patient confirmed it by replying 1.
ALTER TABLE appointments ADD COLUMN phone_hash text;
ALTER TABLE appointments ADD COLUMN confirmed_at timestamptz;
CREATE INDEX appointments_phone_upcoming ON appointments (phone_hash, start_at)
    WHERE phone_hash IS NOT NULL;

-- What a person must decide: a patient's request to cancel (reply 3), a patient who opted out with an
-- appointment still booked ("may want to cancel"), or a reply we could not tie to one appointment.
-- phi: the number to text the decision to, sealed with PHI_KEY, deleted once decided.
CREATE TABLE staff_requests (
    id              bigserial PRIMARY KEY,
    appointment_id  text REFERENCES appointments (appointment_id) ON DELETE CASCADE,
    kind            text NOT NULL CHECK (kind IN ('cancel', 'opted_out', 'unclear')),
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'approved', 'denied')),
    phone_hash      text NOT NULL,
    phi             bytea,
    modality        text,
    created_at      timestamptz NOT NULL,
    decided_at      timestamptz,
    decided_by      text,
    note            text CHECK (length(note) <= 200),
    correlation_id  text NOT NULL
);
-- One open request of a kind per appointment: a patient replying 3 twice asks once.
CREATE UNIQUE INDEX staff_requests_one_open ON staff_requests (appointment_id, kind)
    WHERE state = 'pending' AND appointment_id IS NOT NULL;
CREATE INDEX staff_requests_pending ON staff_requests (created_at) WHERE state = 'pending';
