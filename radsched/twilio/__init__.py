"""The Twilio transport: the provider (the real SDK, or the console in demos), the SMS outbox
sender task, the signed webhooks, and the component that starts them (``transport.py``)."""
