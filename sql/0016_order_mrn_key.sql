-- A keyed hash of the order's MRN, kept after its sealed PHI is purged (issue 11 item 6), so that a
-- REST booking for an order that has ended still proves the caller knows the patient: a wrong MRN
-- answers like an unknown order id. mrn_key = hex HMAC-SHA256(PHONE_HASH_KEY, 'mrn:' || order_key ||
-- ':' || MRN) (radsched/storage/orders.py): bound to the order, so equal MRNs of two orders do not
-- match, and not reversible without the key (which lives outside the database). Orders stored
-- before this column have NULL: checked against the sealed MRN while it is there, else unknown.

ALTER TABLE orders ADD COLUMN mrn_key text;
