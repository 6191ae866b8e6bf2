-- Fewer round trips per inbound message (issue 16): a lock and the look-up that must follow it, in one
-- call. Under READ COMMITTED a statement only sees what committed before it started, so a look-up in the
-- same statement as the lock could miss the row the lock waited for; inside a VOLATILE plpgsql function
-- every statement takes a fresh snapshot, so the look-up after PERFORM sees it. The lock keys are the
-- ones the two-statement form used (a daemon of the previous release on the same database serialises
-- with this one).

-- The sender + control id of an inbound message, serialised across connections and daemons; the ACK
-- stored for it, if any (radsched/storage/inbound_messages.py).
CREATE FUNCTION radsched_inbound_lock(p_sender text, p_control_id text) RETURNS bytea
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(
        hashtextextended('inbound' || chr(31) || p_sender || chr(31) || p_control_id, 0));
    RETURN (SELECT ack_payload FROM inbound_messages
             WHERE sender = p_sender AND control_id = p_control_id);
END $$;

-- New conversations of one phone, serialised; then its consent state and whether it has a live
-- conversation (radsched/storage/conversations.py).
CREATE FUNCTION radsched_phone_lock(p_phone_hash text, OUT consent text, OUT busy boolean)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('phone:' || p_phone_hash, 0));
    consent := (SELECT c.consent_state FROM patient_sms_consents c WHERE c.phone_hash = p_phone_hash);
    busy := EXISTS (SELECT 1 FROM sms_conversations s
                     WHERE s.phone_hash = p_phone_hash AND s.ended_at IS NULL);
END $$;
