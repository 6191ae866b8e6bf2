-- No-shows the RIS tells us of (issue 13 item 7): an SIU^S26, or an SIU^S14 whose SCH-25 filler status is
-- Noshow, for an appointment in the record appends a 'noshow' event (once per appointment and start; a
-- resent S26 adds nothing). The appointment's status is left as it is: `status` is the booking's state
-- (booked / rescheduled / cancelled / deleted) that the change paths follow, and a RIS that later moves the
-- same appointment (SIU^S13) must still be followed. `radsched report` counts the events.
ALTER TABLE appointment_events DROP CONSTRAINT appointment_events_kind_check;
ALTER TABLE appointment_events ADD CONSTRAINT appointment_events_kind_check
    CHECK (kind IN ('booked', 'rescheduled', 'modified', 'cancelled', 'deleted', 'noshow'));
