-- Twilio webhook replay guard (issue 11, item 2): one row per X-Twilio-Signature we acted on.
-- The signature covers the URL and the fields concatenated without separators, so a captured request
-- can be re-split into a different form that still verifies; whatever the fields say, the signature
-- header is the same, and a second request with it is a replay (Twilio's own retries of a webhook
-- are caught earlier, by MessageSid in sms_inbound). Only the SHA-256 of the header value is kept,
-- never the signature: nothing here helps anyone forge or replay a request. Retention deletes rows
-- after 400 days (radsched/retention.py, docs/twilio.md).
CREATE TABLE webhook_signatures (
    signature_sha256  bytea PRIMARY KEY CHECK (length(signature_sha256) = 32),
    received_at       timestamptz NOT NULL
);
CREATE INDEX webhook_signatures_received_at ON webhook_signatures (received_at);
