"""radsched: HL7 v2 / MLLP integration daemon with an SMS self-scheduling engine."""

__version__ = "0.1.0"
