-- SMS engine, part A: order intake, conversations, consent, modality control, reports.

-- Any change to scheduling_config (from `radsched modality`, or an operator's psql session) wakes every
-- running daemon's modality cache at commit. Statement-level, so a bulk change notifies once.
CREATE FUNCTION radsched_notify_config() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('radsched_config', 'scheduling_config');
    RETURN NULL;
END;
$$;

CREATE TRIGGER scheduling_config_notify
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON scheduling_config
    FOR EACH STATEMENT EXECUTE FUNCTION radsched_notify_config();

-- `radsched report` groups the audit log by modality over a time window, and joins the rows of one
-- conversation (order received -> booked) for the median time to book.
CREATE INDEX sms_audit_log_modality ON sms_audit_log (modality, occurred_at);
CREATE INDEX sms_audit_log_session ON sms_audit_log (session_id) WHERE session_id IS NOT NULL;

-- The staff work list: orders handed to a person (modality disabled, RIS down, opted out, …).
CREATE INDEX orders_deferred ON orders (updated_at) WHERE state = 'deferred';

-- A text from a phone whose conversations have all ended is answered from its most recent one
-- (the partial index of 0001 covers live conversations only).
CREATE INDEX sms_conversations_phone ON sms_conversations (phone_hash, updated_at DESC);
