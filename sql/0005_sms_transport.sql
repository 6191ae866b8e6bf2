-- SMS transport (Twilio): webhook de-duplication and the outbox sender's claim guard.
-- See docs/twilio.md for why each column exists (the never-send-twice rule).

-- One row per Twilio webhook we acted on. An inbound text is keyed ('inbound', MessageSid); a status
-- callback is keyed (MessageStatus, MessageSid), because Twilio sends several callbacks per message
-- (sent, then delivered) and each is a different event. No number, no body: only Twilio's ids.
CREATE TABLE sms_inbound (
    message_sid     text NOT NULL CHECK (length(message_sid) BETWEEN 1 AND 64),
    event           text NOT NULL,                -- 'inbound' or the MessageStatus of a status callback
    received_at     timestamptz NOT NULL DEFAULT now(),
    claimed_at      timestamptz NOT NULL DEFAULT now(),  -- a claim not completed within a minute may be retaken
    completed_at    timestamptz,                  -- set once the engine transition committed
    correlation_id  text NOT NULL,
    PRIMARY KEY (message_sid, event)
);
CREATE INDEX sms_inbound_received_at ON sms_inbound (received_at);

-- The claim: a sender marks a row 'sending' with a fresh claim_token and the identity of its own
-- long-lived database session (claimed_by = 'pid@backend_start') BEFORE calling Twilio. A row left in
-- 'sending' by a session that no longer exists was interrupted mid-send: it is marked failed
-- ('ambiguous'), never re-sent; a later status callback (StatusCallback carries ?outbox=<id>) can still
-- prove it was sent.
ALTER TABLE sms_outbox
    ADD COLUMN claim_token     uuid,
    ADD COLUMN claimed_by      text,
    ADD COLUMN claimed_at      timestamptz,
    ADD COLUMN error_code      integer,           -- Twilio error code (21610, 21211, 30003 …) or HTTP status
    ADD COLUMN error_class     text,              -- opted_out, invalid_number, rate_limited, server_error, …
    ADD COLUMN provider_status text,              -- last MessageStatus seen in a status callback
    ADD COLUMN status_at       timestamptz;

CREATE INDEX sms_outbox_sending ON sms_outbox (claimed_at) WHERE state = 'sending';
CREATE INDEX sms_outbox_waiting ON sms_outbox (created_at) WHERE state IN ('pending', 'sending');
