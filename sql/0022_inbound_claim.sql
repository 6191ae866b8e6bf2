-- One round trip fewer per inbound message (issue 16): the lock, the look-up for an earlier ACK, and
-- the record of this message, in one call at the start of its transaction. The record holds the ACK
-- the message gets when its handler accepts it as it is (AA, no text), which is what almost every
-- message gets; any other answer overwrites it before the commit (radsched/inbound/router.py), and a
-- rollback takes it away with the handler's writes. So a committed row still means "done, and this is
-- what we answered". The lock and the look-up are 0021's radsched_inbound_lock, which stays for a
-- daemon of the previous release on the same database: both serialise on the same lock.
CREATE FUNCTION radsched_inbound_claim(
    p_sender text, p_control_id text, p_message_type text, p_received_at timestamptz,
    p_ack_code text, p_ack bytea, p_correlation_id text
) RETURNS bytea
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    -- ack_payload is NOT NULL: NULL means no earlier message.
    stored bytea := radsched_inbound_lock(p_sender, p_control_id);
BEGIN
    IF stored IS NULL THEN
        INSERT INTO inbound_messages
            (sender, control_id, message_type, received_at, ack_code, ack_payload, correlation_id)
        VALUES (p_sender, p_control_id, p_message_type, p_received_at, p_ack_code, p_ack,
                p_correlation_id);
    END IF;
    RETURN stored;
END $$;
