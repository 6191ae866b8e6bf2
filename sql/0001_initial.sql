-- radsched initial schema.
-- Rules (DESIGN.md section 9): phones appear only as phone_hash = hex HMAC-SHA256(PHONE_HASH_KEY, E.164);
-- anything a conversation must remember about the patient is AES-GCM ciphertext (PHI_KEY) in a bytea
-- column that is deleted when no longer needed; the audit log holds metadata only.

-- Consent per phone (the source design's patient_sms_consents).
CREATE TABLE patient_sms_consents (
    phone_hash     text PRIMARY KEY CHECK (phone_hash ~ '^[0-9a-f]{64}$'),
    consent_state  text NOT NULL CHECK (consent_state IN ('granted', 'revoked', 'pending')),
    source         text NOT NULL,              -- keyword or event that set the state (e.g. 'STOP', 'YES', 'twilio-21610')
    updated_at     timestamptz NOT NULL DEFAULT now(),
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- Every text in or out, metadata only: never a body, number, name or MRN.
CREATE TABLE sms_audit_log (
    id              bigserial PRIMARY KEY,
    occurred_at     timestamptz NOT NULL DEFAULT now(),
    phone_hash      text NOT NULL,
    message_type    text NOT NULL,              -- template id or inbound keyword class
    direction       text NOT NULL CHECK (direction IN ('inbound', 'outbound', 'system')),
    consent_state   text,
    session_id      uuid,
    correlation_id  text,
    modality        text,
    outcome         text
);
CREATE INDEX sms_audit_log_occurred_at ON sms_audit_log (occurred_at);       -- retention, reports
CREATE INDEX sms_audit_log_phone_hash ON sms_audit_log (phone_hash, occurred_at); -- support look-ups

-- One conversation per order. state_data holds menus of opaque ids (location and slot ids), never PHI.
CREATE TABLE sms_conversations (
    id              uuid PRIMARY KEY,
    phone_hash      text NOT NULL,
    order_key       text NOT NULL,              -- HMAC of the order id (radsched/orders.py), so ORC-1=CA finds it
    modality        text NOT NULL,
    facility        text,
    state           text NOT NULL,
    state_data      jsonb NOT NULL DEFAULT '{}'::jsonb,
    phi             bytea,                      -- AES-GCM(PHI_KEY): number to text back, MRN, order id; NULL once ended
    version         integer NOT NULL DEFAULT 0, -- optimistic concurrency between webhook and timer paths
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    wake_at         timestamptz,                -- quiet hours release, expiry check
    ended_at        timestamptz
);
CREATE UNIQUE INDEX sms_conversations_order_key ON sms_conversations (order_key);
CREATE INDEX sms_conversations_active_phone ON sms_conversations (phone_hash, updated_at DESC)
    WHERE ended_at IS NULL;
CREATE INDEX sms_conversations_wake ON sms_conversations (wake_at) WHERE ended_at IS NULL;
CREATE INDEX sms_conversations_ended ON sms_conversations (ended_at) WHERE ended_at IS NOT NULL;

-- Which modalities are offered by text; ENABLED_MODALITIES is the fallback when a modality has no row.
CREATE TABLE scheduling_config (
    modality    text PRIMARY KEY CHECK (modality ~ '^[A-Z0-9]{1,16}$'),
    enabled     boolean NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text NOT NULL
);

-- Who changed what configuration, when and why (old -> new).
CREATE TABLE config_audit (
    id          bigserial PRIMARY KEY,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    changed_by  text NOT NULL,
    item        text NOT NULL,                  -- e.g. 'modality:CT'
    old_value   text,
    new_value   text NOT NULL,
    note        text
);
CREATE INDEX config_audit_changed_at ON config_audit (changed_at);

-- Inbound HL7 log for duplicate detection: the same sender + MSH-10 gets the original ACK again.
CREATE TABLE inbound_messages (
    id            bigserial PRIMARY KEY,
    sender        text NOT NULL,                -- MSH-3^MSH-4 of the sender
    control_id    text NOT NULL,                -- MSH-10
    message_type  text NOT NULL,                -- e.g. ORM^O01
    received_at   timestamptz NOT NULL DEFAULT now(),
    ack_code      text NOT NULL,
    ack_payload   bytea NOT NULL,               -- our ACK, replayed for duplicates; carries no PHI
    correlation_id text NOT NULL,
    UNIQUE (sender, control_id)
);
CREATE INDEX inbound_messages_received_at ON inbound_messages (received_at);

-- SMS outbox: written in the same transaction as the state change, sent after commit.
CREATE TABLE sms_outbox (
    id               bigserial PRIMARY KEY,
    conversation_id  uuid,
    phone_hash       text NOT NULL,
    template_id      text NOT NULL,
    payload          bytea,                     -- AES-GCM(PHI_KEY): destination number and body; NULL once sent
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'sending', 'sent', 'delivered', 'failed', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    not_after        timestamptz,               -- a time-sensitive text past this is dropped, not sent late
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    provider_sid     text,                      -- Twilio MessageSid once accepted
    last_error       text,
    correlation_id   text NOT NULL
);
CREATE INDEX sms_outbox_due ON sms_outbox (next_attempt_at, id) WHERE state = 'pending';
CREATE UNIQUE INDEX sms_outbox_provider_sid ON sms_outbox (provider_sid) WHERE provider_sid IS NOT NULL;

-- HL7 outbox (SIU^S12 to EMRs, per destination, FIFO by id).
CREATE TABLE hl7_outbox (
    id               bigserial PRIMARY KEY,
    destination      text NOT NULL,             -- route name / host:port
    control_id       text NOT NULL,             -- MSH-10, identical on every retry
    message_type     text NOT NULL,
    payload          bytea,                     -- AES-GCM(PHI_KEY) of the HL7 bytes; NULL once delivered
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    ack_code         text,
    last_error       text,
    correlation_id   text NOT NULL,
    UNIQUE (destination, control_id)
);
CREATE INDEX hl7_outbox_pending ON hl7_outbox (destination, id) WHERE state = 'pending';
CREATE INDEX hl7_outbox_delivered ON hl7_outbox (delivered_at) WHERE state = 'delivered';
