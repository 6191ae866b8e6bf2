-- Orders received (MLLP ORM^O01 or POST /api/orders) and bookings made on the RIS.
-- Both are keyed by order_key = hex HMAC-SHA256(PHONE_HASH_KEY, 'order:' || order id) (radsched/orders.py),
-- so a cancel (ORC-1=CA) or a repeated booking finds its row without the order id being stored in clear.

CREATE TABLE orders (
    id            uuid PRIMARY KEY,
    order_key     text NOT NULL UNIQUE,
    source        text NOT NULL CHECK (source IN ('mllp', 'api')),
    modality      text NOT NULL,
    facility      text,
    state         text NOT NULL DEFAULT 'received'
                  CHECK (state IN ('received', 'texting', 'deferred', 'booked', 'cancelled', 'ended')),
    deferred_reason text,                        -- why staff must call (modality disabled, RIS down, no mobile …)
    phi           bytea,                         -- AES-GCM(PHI_KEY) of the parsed order (ids, MRN, name, phone, procedure)
    received_at   timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    correlation_id text NOT NULL
);
CREATE INDEX orders_received_at ON orders (received_at);
CREATE INDEX orders_modality ON orders (modality, received_at);

-- One row per (order, slot) booking attempt, written BEFORE the HL7 booking is sent: a repeat of the same
-- request returns the stored outcome, and a crash between send and reply is resolved on restart.
CREATE TABLE bookings (
    id                uuid PRIMARY KEY,
    order_key         text NOT NULL,
    slot_id           text NOT NULL,
    location_id       text NOT NULL,
    modality          text NOT NULL,
    state             text NOT NULL DEFAULT 'pending'
                      CHECK (state IN ('pending', 'booked', 'rejected', 'failed')),
    control_id        text NOT NULL UNIQUE,      -- MSH-10 of the booking request; reused when re-sent
    ack_code          text,
    reason            text,                      -- RIS rejection text (no PHI: MSA-3/ERR of the RIS)
    confirmation_code text,
    appointment_id    text NOT NULL,             -- our placer appointment id (SCH-1)
    filler_appointment_id text,                  -- the RIS's (SCH-2), when returned
    start_at          timestamptz,
    duration_minutes  integer,
    source            text NOT NULL CHECK (source IN ('rest', 'sms')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    correlation_id    text NOT NULL,
    UNIQUE (order_key, slot_id)
);
CREATE INDEX bookings_pending ON bookings (created_at) WHERE state = 'pending';
CREATE UNIQUE INDEX bookings_confirmation_code ON bookings (confirmation_code) WHERE confirmation_code IS NOT NULL;
