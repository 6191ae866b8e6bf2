-- Who sent an order over MLLP (issue 11 item 4): MSH-3^MSH-4 (namespace ids), the sender a cancel
-- (ORC-1 CA/OC/DC/CR) must come from to be honoured. NULL for orders from POST /api/orders and for
-- orders received before this migration: their cancels are honoured from any sender, as before.
-- Not patient data: the name of the RIS interface and its facility.
ALTER TABLE orders ADD COLUMN sender text;
