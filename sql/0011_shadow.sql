-- Shadow mode (issue 17): where the gateway's answer and the shadowed engine's answer differed.
-- Ids and calendar facts only, never patient data: location ids, modality, slot start and slot ids,
-- durations or an error code in detail. Read by `radsched shadow report`; a gateway in shadow mode
-- deletes rows older than 90 days (a parallel run lasts days or weeks, not years).

CREATE TABLE shadow_mismatches (
    id           bigserial PRIMARY KEY,
    seen_at      timestamptz NOT NULL,
    kind         text NOT NULL CHECK (kind IN (
                     'location_only_here', 'location_only_shadow', 'location_name_differs',
                     'slot_only_here', 'slot_only_shadow', 'slot_duration_differs',
                     'shadow_failed', 'here_failed')),
    call         text NOT NULL CHECK (call IN ('locations', 'available-slots')),
    modality     text NOT NULL,
    location_id  text NOT NULL DEFAULT '',
    slot_start   timestamptz,
    here_id      text NOT NULL DEFAULT '',     -- our slot (or location) id
    shadow_id    text NOT NULL DEFAULT '',     -- the shadowed engine's slot (or location) id
    detail       text NOT NULL DEFAULT ''      -- e.g. '30 vs 15 min', 'ris_timeout'
);

CREATE INDEX shadow_mismatches_seen ON shadow_mismatches (seen_at, kind);
