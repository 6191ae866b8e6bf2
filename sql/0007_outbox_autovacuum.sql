-- Outboxes that churn (issue 16 item 5): vacuum them by dead-row count, not by table size.
--
-- Both outboxes see every row rewritten two or three times and then deleted or kept as history
-- (hl7_outbox keeps delivered metadata for years; sms_outbox keeps sent rows until retention). With
-- the server's defaults a table is vacuumed only once its dead rows pass 50 + 20% of its rows: with a
-- million rows of history that is 200,000 dead versions first, all of them in the pending indexes
-- the claims walk. Here: vacuum after 1,000 dead rows whatever the size, without cost-based
-- throttling (the live part is small, so a vacuum is short), analyze after 5,000 changes, and an
-- insert-driven vacuum every 10,000 inserts so the visibility map stays current. What no setting can
-- fix is a transaction left open elsewhere: vacuum cannot remove rows it may still see, which is
-- why radsched_outbox_dead_rows and radsched_db_oldest_transaction_seconds are exported and alerted
-- on (contrib/prometheus/alerts.yml, docs/performance.md "Outbox churn").
ALTER TABLE hl7_outbox SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 10000,
    autovacuum_analyze_scale_factor = 0,
    autovacuum_analyze_threshold = 5000,
    autovacuum_vacuum_cost_delay = 0
);

ALTER TABLE sms_outbox SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 10000,
    autovacuum_analyze_scale_factor = 0,
    autovacuum_analyze_threshold = 5000,
    autovacuum_vacuum_cost_delay = 0
);
