"""The SMS conversation driver: loads a conversation, steps the pure core, stores the result and
performs the commands (texts into the outbox, RIS calls, timers, consent and audit rows).

- :mod:`.engine` - :class:`SmsEngine`, what the other components call
- :mod:`.driver` - one transition inside one transaction
- :mod:`.outbox` - the SMS outbox rows (the Twilio sender in radsched/twilio drains them)
- :mod:`.timer`, :mod:`.consent`, :mod:`.audit`, :mod:`.ris_calls`, :mod:`.engine_metrics`

The pure core it drives is radsched/conversation; the Twilio transport is radsched/twilio.
"""
