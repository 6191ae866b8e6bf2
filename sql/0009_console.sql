-- Admin console (radsched/console, docs/console.md): local users, their sessions, and an audit of every
-- login, failed login, page view that shows an order number, and action. No PHI in any column.

CREATE TABLE console_users (
    id                  bigserial PRIMARY KEY,
    name                text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
    role                text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    password_hash       text NOT NULL,                 -- argon2id, PHC string format
    must_change         boolean NOT NULL DEFAULT false, -- one-time password: change it at first login
    created_at          timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz,
    disabled_at         timestamptz
);

-- The cookie carries the session id (encrypted); this row lets logout and `admin-user disable` end a
-- session on the server side too, before its idle or absolute timeout.
CREATE TABLE console_sessions (
    id            text PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES console_users (id),
    created_at    timestamptz NOT NULL,
    last_seen_at  timestamptz NOT NULL,
    ended_at      timestamptz,
    end_reason    text
);
CREATE INDEX console_sessions_live ON console_sessions (user_id) WHERE ended_at IS NULL;

-- Who did what in the console, when, from where, old -> new. The actor of a failed login with an
-- unknown name is '?' (the typed text is never kept: it might be anything, even a patient's name).
CREATE TABLE console_audit (
    id           bigserial PRIMARY KEY,
    occurred_at  timestamptz NOT NULL DEFAULT now(),
    actor        text NOT NULL,
    address      text,
    action       text NOT NULL,                 -- e.g. 'login', 'login_failed', 'modality', 'outbox_retry'
    target       text,                          -- e.g. 'modality:CT', 'hl7_outbox:12', 'user:alice'
    old_value    text,
    new_value    text,
    note         text
);
CREATE INDEX console_audit_occurred_at ON console_audit (occurred_at DESC, id DESC);
CREATE INDEX console_audit_actor ON console_audit (actor, occurred_at DESC);

-- Message log search (console) by control id and by time, newest first, on both directions.
CREATE INDEX inbound_messages_control_id ON inbound_messages (control_id);
CREATE INDEX hl7_outbox_control_id ON hl7_outbox (control_id);
CREATE INDEX hl7_outbox_created_at ON hl7_outbox (created_at);
